"""Notebook display: a pipeline and a plan draw themselves (`_repr_mimebundle_`)."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from dags import build, dags, seedings
from hypothesis import given, settings
from hypothesis import strategies as st
from test_core import make_seed

from pipeliner_rx import Pipeline


@pytest.fixture
def no_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)


def need_graphviz() -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Graphviz; `dot` must be on PATH")
        pytest.skip("Graphviz `dot` is not installed")


def mermaid_of(bundle: dict[str, str]) -> str:
    assert set(bundle) == {"text/markdown"}
    text = bundle["text/markdown"]
    assert text.startswith("```mermaid\n") and text.endswith("```\n")
    return text.removeprefix("```mermaid\n").removesuffix("```\n")


def test_pipeline_displays_as_svg_with_graphviz(pipeline: Pipeline) -> None:
    need_graphviz()
    make_seed(pipeline, [])
    pipeline.add_environment_resources(base=38)
    bundle = pipeline._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml"}
    svg = bundle["image/svg+xml"]
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    for name in ("divide", "get_resmod", "res_minus_mod", "(present)", "(input)"):
        assert f">{name}</text>" in svg, name


def test_pipeline_displays_as_mermaid_without_graphviz(
    pipeline: Pipeline, no_graphviz: None
) -> None:
    make_seed(pipeline, [])
    assert mermaid_of(pipeline._repr_mimebundle_()) == pipeline.to_mermaid()


def test_a_failing_graphviz_falls_back_to_mermaid(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "dot"
    broken.write_text("#!/bin/sh\necho 'dot: cannot load plugins' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(shutil, "which", lambda name: str(broken))
    make_seed(pipeline, [])
    assert mermaid_of(pipeline._repr_mimebundle_()) == pipeline.to_mermaid()


def test_plan_displays_runs_and_skips_as_svg_with_graphviz(pipeline: Pipeline) -> None:
    need_graphviz()
    make_seed(pipeline, [])
    plan = pipeline.plan("get_division", base=38)
    svg = plan._repr_mimebundle_()["image/svg+xml"]
    for name in ("divide", "mod", "get_division", "base_provider", "(skip)", "(present)"):
        assert f">{name}</text>" in svg, name
    assert ">get_resmod</text>" not in svg  # not part of this call


def test_plan_displays_as_mermaid_without_graphviz(pipeline: Pipeline, no_graphviz: None) -> None:
    make_seed(pipeline, [])
    text = mermaid_of(pipeline.plan("get_division", base=38)._repr_mimebundle_())
    assert text.startswith("flowchart LR\n")
    assert '["base_provider"]:::skip' in text  # suppressed: `base` is supplied
    for name in ("divide", "mod", "get_division"):
        assert f'["{name}"]:::step' in text
    assert '(["base<br/><i>present</i>"]):::present' in text
    assert '(["divisor<br/><i>input</i>"]):::input' in text
    assert "get_resmod" not in text


def test_a_plan_made_by_hand_displays_an_empty_graph(no_graphviz: None) -> None:
    from pipeliner_rx import Plan

    text = mermaid_of(Plan("nothing")._repr_mimebundle_())
    assert text.startswith("flowchart LR\n") and "-->" not in text


def parse_mermaid(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """Node id -> (label, class), and the edges, of a flowchart as `to_mermaid` writes it."""
    nodes: dict[str, tuple[str, str]] = {}
    edges: list[tuple[str, str]] = []
    for line in text.splitlines()[1:]:
        line = line.strip()
        if node := re.fullmatch(r'(\w+)\(?\["([^"<]*)[^"]*"\]\)?:::(\w+)', line):
            nodes[node[1]] = (node[2], node[3])
        elif edge := re.fullmatch(r"(\w+) --> (\w+)", line):
            edges.append((edge[1], edge[2]))
    return nodes, edges


@st.composite
def planned(draw: st.DrawFn) -> tuple[Pipeline, Any, dict[str, Any]]:
    dag = draw(dags(max_steps=25))
    pipeline, steps = build(dag, [])
    # A step, or a resource some step provides (plans are of what could run).
    target = draw(st.sampled_from([*steps.values(), *dag.provided]))
    return pipeline, target, draw(seedings(dag))


@settings(max_examples=100, deadline=None)
@given(planned())
def test_plan_graph_draws_exactly_what_the_plan_runs_and_skips(
    case: tuple[Pipeline, Any, dict[str, Any]],
) -> None:
    pipeline, target, seeds = case
    plan = pipeline.plan(target, **seeds)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "which", lambda name: None)
        nodes, edges = parse_mermaid(mermaid_of(plan._repr_mimebundle_()))
    steps = {label: style for label, style in nodes.values() if style in ("step", "skip")}
    assert steps == {name: "step" for name in plan.runs} | {name: "skip" for name in plan.skips}
    by_name = {step.name: step for step in pipeline.steps}
    for source, sink in edges:
        assert source in nodes and sink in nodes
        (a, a_style), (b, b_style) = nodes[source], nodes[sink]
        if b_style == "step":  # resource -> step that would run: one of its parameters
            assert a in by_name[b].param_names
        else:  # step -> resource it gives
            assert a_style in ("step", "skip") and b in by_name[a].provides
    for label, style in nodes.values():
        if style == "present":
            assert label in seeds
        if style == "input":
            assert all(label not in step.provides for step in pipeline.steps)
    for name in plan.missing:
        assert (name, "input") in nodes.values()
