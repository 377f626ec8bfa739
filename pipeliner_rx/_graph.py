"""The pipeline as a graph: Mermaid and Graphviz export, rendering, and dry-run plans."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import CycleError, UnknownTargetError

if TYPE_CHECKING:
    from ._step import Step
    from ._store import Store

__all__ = ["downstream", "Plan", "make_plan", "mimebundle", "render_dot", "to_dot", "to_mermaid"]


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
class _Box:
    """A step as drawn: its name, the resources it needs and gives, and how it is styled."""

    name: str
    needs: tuple[str, ...]
    gives: tuple[str, ...]
    style: str = "step"  # or "skip": a plan's step whose outputs are present


@dataclass(frozen=True, slots=True)
class _Drawing:
    """What both exports draw: boxes, and each resource's state (computed, input, present)."""

    boxes: tuple[_Box, ...] = ()
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
) -> _Drawing:
    steps, resources = _graph(steps, providers, targets)
    return _Drawing(
        tuple(_Box(step.label, step.param_names, step.provides) for step in steps),
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


@dataclass(frozen=True)
class Plan:
    """What a call would do, worked out without running anything.

    Attributes:
        target: the name of what was planned.
        runs: the steps that would run, in an order that respects their dependencies.
        skips: the steps that would not run because their outputs are present.
        missing: the resources that nothing supplies (the call would raise
            `MissingResourceError`).
        reasons: for each step in ``runs`` and ``skips``, why.
    """

    target: str
    runs: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    _drawing: _Drawing = field(default=_Drawing(), repr=False, compare=False)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The plan as a graph in Jupyter (see `Pipeline._repr_mimebundle_`).

        The steps that would run are drawn as in `Pipeline.to_dot`, the skipped ones dashed and
        grey, with what the call would supply marked *present*.
        """
        return mimebundle(self._drawing.dot, self._drawing.mermaid)

    def __str__(self) -> str:
        lines = [f"Plan for `{self.target}`:"]
        if not self.runs and not self.skips:
            lines.append("  nothing to do")
        width = max((len(name) for name in [*self.runs, *self.skips]), default=0)
        for verb, names in (("run ", self.runs), ("skip", self.skips)):
            lines += [f"  {verb}  {name:<{width}}  {self.reasons[name]}" for name in names]
        if self.missing:
            listed = ", ".join(f"`{name}`" for name in self.missing)
            lines.append(
                f"  missing: {listed}; supply {'it' if len(self.missing) == 1 else 'them'} to the "
                f"call or with `add_environment_resources`, or the call raises "
                f"MissingResourceError."
            )
        return "\n".join(lines)


def make_plan(
    target: Step[Any] | str,
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    store: Store,
    resources: Mapping[str, Any],
) -> Plan:
    """Plan ``target`` against ``store`` plus ``resources``; see `Pipeline.plan`."""
    steps = list(steps)
    if isinstance(target, str):
        step = providers.get(target) or next((s for s in steps if s.label == target), None)
        if step is None:
            raise UnknownTargetError(target, [s.label for s in steps])
        root_names = [target] if target in providers else None
    else:
        step, root_names = target, None

    def present(name: str) -> bool:
        return name in resources or store.present(name)

    plan = Plan(target if isinstance(target, str) else target.label)
    drawn: list[tuple[Step[Any], str]] = []  # each planned step and its style, for the graph
    missing: dict[str, None] = {}
    suppressed: dict[Step[Any], str] = {}  # providers not run because what they give is present
    done: set[Step[Any]] = set()
    on_path: dict[Step[Any], int] = {}
    # Explicit stack of (step, index of next parameter): no recursion, as in the engine.
    stack: list[list[Any]] = []

    def visit(s: Step[Any], via: str | None) -> None:
        if s.provides and all(present(name) for name in s.provides):
            if s not in done:
                done.add(s)
                plan.skips.append(s.label)
                drawn.append((s, "skip"))
                outputs = ", ".join(f"`{name}`" for name in s.provides)
                plan.reasons[s.label] = f"its outputs ({outputs}) are present"
            return
        if s in done:
            return
        if s in on_path:
            path = [via or ""]
            for frame in reversed(stack[on_path[s] + 1 :]):
                path += [frame[0].label, frame[2] or ""]
            raise CycleError([*path, s.label, via or ""])
        on_path[s] = len(stack)
        stack.append([s, 0, via])

    if root_names is not None:
        name = root_names[0]
        if present(name):
            plan.skips.append(step.label)
            plan.reasons[step.label] = f"`{name}` is present"
            return _with_drawing(plan, [(step, "skip")], providers, present)
    visit(step, None)
    while stack:
        frame = stack[-1]
        s, index = frame[0], frame[1]
        if index < len(s.params):
            frame[1] += 1
            param = s.params[index]
            provider = providers.get(param.name)
            if present(param.name):
                if provider is not None and provider not in done:
                    suppressed.setdefault(provider, f"`{param.name}` is present")
                continue
            if provider is None:
                if not param.has_default:
                    missing[param.name] = None
                continue
            visit(provider, param.name)
            continue
        stack.pop()
        del on_path[s]
        done.add(s)
        plan.runs.append(s.label)
        drawn.append((s, "step"))
        needs = ", ".join(f"`{p.name}`" for p in s.params) or "nothing"
        if frame[2] is None:
            plan.reasons[s.label] = f"the target; needs {needs}"
        else:
            plan.reasons[s.label] = f"provides missing `{frame[2]}`; needs {needs}"
    plan.missing.extend(missing)
    for provider, reason in suppressed.items():
        if provider.label not in plan.runs and provider.label not in plan.skips:
            plan.skips.append(provider.label)
            drawn.append((provider, "skip"))
            plan.reasons[provider.label] = reason
    return _with_drawing(plan, drawn, providers, present)


def _with_drawing(
    plan: Plan,
    drawn: list[tuple[Step[Any], str]],
    providers: Mapping[str, Step[Any]],
    present: Callable[[str], bool],
) -> Plan:
    """``plan`` with its graph: the planned steps (a skipped one without its inputs)."""
    boxes = []
    resources: dict[str, str] = {}
    for step, style in drawn:
        needs = step.param_names if style == "step" else ()
        boxes.append(_Box(step.label, needs, step.provides, style))
        for name in (*needs, *step.provides):
            if name not in resources:
                if present(name):
                    resources[name] = "present"
                else:
                    resources[name] = "computed" if name in providers else "input"
    return dataclasses.replace(plan, _drawing=_Drawing(tuple(boxes), tuple(resources.items())))
