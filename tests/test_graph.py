"""Graph export and dry-run plans."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from typing import Any

import pytest
from test_core import make_seed

from pipeliner_rx import CycleError, Pipeline, PipelineError

SEED_STEPS = ["base_provider", "divide", "mod", "get_resmod", "get_division"]
SEED_RESOURCES = ["base", "divisor", "result", "modulus", "res_times_mod", "res_minus_mod"]


@pytest.fixture
def seed(pipeline: Pipeline) -> tuple[Pipeline, dict[str, Any], list[str]]:
    calls: list[str] = []
    return pipeline, make_seed(pipeline, calls), calls


def test_mermaid_contains_every_step_and_resource(seed: Any) -> None:
    pipeline, _, _ = seed
    text = pipeline.to_mermaid()
    assert text.startswith("flowchart LR\n")
    for name in SEED_STEPS + SEED_RESOURCES:
        assert f'"{name}' in text, name
    assert ":::input" in text  # divisor has no provider
    assert ":::present" not in text
    pipeline.add_environment_resources(base=1)
    assert '(["base<br/><i>present</i>"]):::present' in pipeline.to_mermaid()


def test_mermaid_edges_go_resource_step_resource(seed: Any) -> None:
    pipeline, _, _ = seed
    lines = pipeline.to_mermaid().splitlines()
    ids = {}
    for line in lines:
        line = line.strip()
        if '["' in line or '(["' in line:
            node, label = line.split("[", 1)
            ids[label.strip('(["])').split("<br/>")[0].split('"')[0]] = node.strip("(")
    assert f"{ids['base']} --> {ids['divide']}" in "\n".join(lines)
    assert f"{ids['divide']} --> {ids['result']}" in "\n".join(lines)


def test_targets_draw_only_what_the_target_needs(seed: Any) -> None:
    pipeline, steps, _ = seed
    text = pipeline.to_mermaid(targets=["result"])
    assert '"divide"' in text and '"base_provider"' in text
    assert '"mod"' not in text and "get_division" not in text
    dot = pipeline.to_dot(targets=[steps["get_resmod"]])
    assert '"step:get_resmod"' in dot and '"step:get_division"' not in dot
    with pytest.raises(PipelineError, match="nothing_here"):
        pipeline.to_dot(targets=["nothing_here"])


def test_dot_marks_inputs_and_present_resources(seed: Any) -> None:
    pipeline, _, _ = seed
    pipeline.add_environment_resources(base=38)
    dot = pipeline.to_dot()
    assert dot.startswith("digraph pipeline {")
    assert '"resource:divisor" [label="divisor\\n(input)"' in dot
    assert '"resource:base" [label="base\\n(present)"' in dot
    assert '"step:divide" -> "resource:result";' in dot
    assert '"resource:base" -> "step:divide";' in dot


def test_dot_output_renders_with_graphviz(seed: Any) -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Graphviz; `dot` must be on PATH")
        pytest.skip("Graphviz `dot` is not installed")
    pipeline, _, _ = seed
    pipeline.add_environment_resources(base=38)
    result = subprocess.run(
        ["dot", "-Tsvg"], input=pipeline.to_dot(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout
    for name in SEED_STEPS:
        assert f">{name}<" in result.stdout


async def test_plan_of_the_seed_with_base_present_runs_nothing(seed: Any) -> None:
    pipeline, steps, calls = seed
    pipeline.add_environment_resources(base=38)
    plan = pipeline.plan("get_division", divisor=3)
    assert plan.runs == ["divide", "mod", "get_division"]
    assert plan.skips == ["base_provider"]
    assert plan.missing == []
    await asyncio.sleep(0.01)
    assert calls == []  # nothing ran
    assert not pipeline.resource_ready("divisor")  # and nothing was stored
    assert not pipeline.resource_ready("result")
    text = str(plan)
    assert "run   divide" in text and "skip  base_provider" in text and "`base` is present" in text
    # The plan agrees with what a call then does.
    await steps["get_division"](divisor=3)
    assert calls == ["divide", "mod", "get_division"]


def test_plan_reports_missing_and_accepts_step_objects(seed: Any) -> None:
    pipeline, steps, _ = seed
    plan = pipeline.plan(steps["get_resmod"])
    assert plan.target == "get_resmod"
    assert plan.runs[-1] == "get_resmod"
    assert set(plan.runs) == {"base_provider", "divide", "mod", "get_resmod"}
    assert plan.runs.index("base_provider") < plan.runs.index("divide")
    assert plan.missing == ["divisor"]
    assert "missing: `divisor`" in str(plan)


def test_plan_skips_a_target_whose_outputs_are_present(seed: Any) -> None:
    pipeline, _, _ = seed
    pipeline.add_environment_resources(result=1)
    plan = pipeline.plan("result")
    assert plan.runs == [] and plan.skips == ["divide"]
    plan = pipeline.plan("divide")
    assert plan.runs == [] and plan.skips == ["divide"]


def test_plan_resource_name_wins_over_step_name(pipeline: Pipeline) -> None:
    @pipeline.step(provides="clash")
    async def make_clash() -> int:
        return 1

    @pipeline.step(provides="other")
    async def clash() -> int:
        return 2

    assert pipeline.plan("clash").runs == ["make_clash"]
    assert pipeline.plan(clash).runs == ["clash"]


def test_plan_errors(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(b: int) -> int:
        return b

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    with pytest.raises(CycleError, match="a -> make_b -> b -> make_a -> a"):
        pipeline.plan("a")
    with pytest.raises(PipelineError, match="`nope`"):
        pipeline.plan("nope")
    assert pipeline.plan("a", b=1).runs == ["make_a"]
