"""The pipeline as a graph: Mermaid and Graphviz export, rendering, and plans' drawings."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .exceptions import UnknownTargetError

if TYPE_CHECKING:
    from ._step import Step
    from ._store import Store

__all__ = [
    "Box",
    "Drawing",
    "downstream",
    "mimebundle",
    "plan_drawing",
    "render_dot",
    "to_dot",
    "to_mermaid",
]


def downstream(steps: Iterable[Step[Any]], names: Iterable[str]) -> set[str]:
    """The resources computed, transitively, from any of ``names`` (not ``names`` themselves)."""
    needing: dict[str, list[Step[Any]]] = {}
    for step in steps:
        for param in step.params:
            needing.setdefault(param.name, []).append(step)
    found: set[str] = set()
    work = list(names)
    while work:
        for step in needing.get(work.pop(), ()):
            for output in step.provides:
                if output not in found:
                    found.add(output)
                    work.append(output)
    return found


def _needed_steps(
    steps: Iterable[Step[Any]], providers: Mapping[str, Step[Any]], targets: Iterable[str]
) -> list[Step[Any]]:
    """The steps a target needs (its providers' upstream closure), in registration order."""
    by_name = {step.label: step for step in steps}
    wanted: set[Step[Any]] = set()
    work: list[Step[Any]] = []
    for target in targets:
        step = providers.get(target) or by_name.get(target)
        if step is None:
            raise UnknownTargetError(target, [s.label for s in steps])
        work.append(step)
    while work:
        step = work.pop()
        if step in wanted:
            continue
        wanted.add(step)
        work.extend(providers[p.name] for p in step.params if p.name in providers)
    return [step for step in steps if step in wanted]


def _graph(
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    targets: Iterable[str] | None,
) -> tuple[list[Step[Any]], list[str]]:
    steps = list(steps)
    if targets is not None:
        steps = _needed_steps(steps, providers, list(targets))
    resources: dict[str, None] = {}
    for step in steps:
        for param in step.params:
            resources[param.name] = None
        for name in step.provides:
            resources[name] = None
    return steps, list(resources)


def _resource_state(name: str, providers: Mapping[str, Step[Any]], store: Store) -> str:
    if store.present(name):
        return "present"
    if name not in providers:
        return "input"
    return "computed"


@dataclass(frozen=True, slots=True)
class Box:
    """A step as drawn: its name, the resources it needs and gives, and how it is styled."""

    name: str
    needs: tuple[str, ...]
    gives: tuple[str, ...]
    style: str = "step"  # or "skip": a plan's step whose outputs are present


@dataclass(frozen=True, slots=True)
class Drawing:
    """What both exports draw: boxes, and each resource's state (computed, input, present)."""

    boxes: tuple[Box, ...] = ()
    resources: tuple[tuple[str, str], ...] = ()

    def mermaid(self) -> str:
        """A Mermaid ``flowchart``: steps as boxes, resources as rounded nodes."""
        rid = {name: f"r{i}" for i, (name, _) in enumerate(self.resources)}
        lines = ["flowchart LR"]
        for name, state in self.resources:
            label = name if state == "computed" else f"{name}<br/><i>{state}</i>"
            lines.append(f'    {rid[name]}(["{_mermaid_text(label)}"]):::{state}')
        for i, box in enumerate(self.boxes):
            lines.append(f'    s{i}["{_mermaid_text(box.name)}"]:::{box.style}')
            for name in box.needs:
                lines.append(f"    {rid[name]} --> s{i}")
            for name in box.gives:
                lines.append(f"    s{i} --> {rid[name]}")
        lines += [
            "    classDef step fill:#dbe4ff,stroke:#364fc7",
            "    classDef computed fill:#ffffff,stroke:#868e96",
            "    classDef input fill:#fff3bf,stroke:#e67700,stroke-dasharray:4 2",
            "    classDef present fill:#d3f9d8,stroke:#2b8a3e,stroke-width:2px",
        ]
        if any(box.style == "skip" for box in self.boxes):
            lines.append("    classDef skip fill:#f1f3f5,stroke:#adb5bd,stroke-dasharray:4 2")
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        """A Graphviz ``digraph``: steps as boxes, resources as ellipses."""
        lines = [
            "digraph pipeline {",
            "    rankdir=LR;",
            '    node [fontname="Helvetica", fontsize=11];',
            '    edge [color="#495057"];',
        ]
        for name, state in self.resources:
            label = name if state == "computed" else f"{name}\\n({state})"
            node = _dot_id("resource:" + name)
            lines.append(f"    {node} [label={_dot_label(label)}, {_DOT_STYLE[state]}];")
        for box in self.boxes:
            node = _dot_id("step:" + box.name)
            if box.style == "skip":
                label = _dot_label(box.name + "\\n(skip)")
                lines.append(
                    f"    {node} [label={label}, shape=box, "
                    f'style="rounded,filled,dashed", fillcolor="#f1f3f5", color="#adb5bd"];'
                )
            else:
                lines.append(
                    f'    {node} [label={_dot_id(box.name)}, shape=box, style="rounded,filled", '
                    f'fillcolor="#dbe4ff", color="#364fc7"];'
                )
            for name in box.needs:
                lines.append(f"    {_dot_id('resource:' + name)} -> {node};")
            for name in box.gives:
                lines.append(f"    {node} -> {_dot_id('resource:' + name)};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _drawing(
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    store: Store,
    targets: Iterable[str] | None,
) -> Drawing:
    steps, resources = _graph(steps, providers, targets)
    return Drawing(
        tuple(Box(step.label, step.param_names, step.provides) for step in steps),
        tuple((name, _resource_state(name, providers, store)) for name in resources),
    )


def to_mermaid(
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    store: Store,
    targets: Iterable[str] | None = None,
) -> str:
    """A Mermaid ``flowchart``: steps as boxes, resources as rounded nodes; see `Pipeline`."""
    return _drawing(steps, providers, store, targets).mermaid()


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def _dot_id(text: str) -> str:
    return json.dumps(text)  # a double-quoted string with backslash escapes, as dot reads it


_DOT_STYLE = {
    "computed": 'shape=ellipse, style=filled, fillcolor="#ffffff", color="#868e96"',
    "input": 'shape=ellipse, style="filled,dashed", fillcolor="#fff3bf", color="#e67700"',
    "present": 'shape=ellipse, style=filled, fillcolor="#d3f9d8", color="#2b8a3e", peripheries=2',
}


def to_dot(
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    store: Store,
    targets: Iterable[str] | None = None,
) -> str:
    """A Graphviz ``digraph`` (input for ``dot``); see `Pipeline.to_dot`."""
    return _drawing(steps, providers, store, targets).dot()


def render_dot(source: str, fmt: str) -> bytes | None:
    """``dot -T<fmt>`` of ``source``, or None when Graphviz's ``dot`` is not on PATH.

    Raises:
        subprocess.CalledProcessError: ``dot`` rejected the source (its message in ``stderr``).
    """
    dot = shutil.which("dot")
    if dot is None:
        return None
    return subprocess.run(
        [dot, f"-T{fmt}"], input=source.encode(), capture_output=True, check=True
    ).stdout


def mimebundle(dot: Callable[[], str], mermaid: Callable[[], str]) -> dict[str, str]:
    """What a notebook shows: SVG when Graphviz is installed, else Mermaid in Markdown."""
    try:
        svg = render_dot(dot(), "svg")
    except (OSError, subprocess.CalledProcessError):
        svg = None  # a broken Graphviz install: the Mermaid text still shows the graph
    if svg is not None:
        return {"image/svg+xml": svg.decode()}
    return {"text/markdown": f"```mermaid\n{mermaid()}```\n"}


def _dot_label(label: str) -> str:
    # Keep the `\n` line break that dot understands; escape only the quotes.
    return '"' + label.replace('"', '\\"') + '"'


def plan_drawing(
    drawn: list[tuple[Step[Any], str]],
    providers: Mapping[str, Step[Any]],
    present: Callable[[str], bool],
) -> Drawing:
    """A plan's graph: the planned steps (a skipped one without its inputs)."""
    boxes = []
    resources: dict[str, str] = {}
    for step, style in drawn:
        needs = step.param_names if style == "step" else ()
        boxes.append(Box(step.label, needs, step.provides, style))
        for name in (*needs, *step.provides):
            if name not in resources:
                if present(name):
                    resources[name] = "present"
                else:
                    resources[name] = "computed" if name in providers else "input"
    return Drawing(tuple(boxes), tuple(resources.items()))
