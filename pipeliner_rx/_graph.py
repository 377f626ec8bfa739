"""The pipeline as a graph: Mermaid and Graphviz export, and dry-run plans."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import CycleError, UnknownTargetError

if TYPE_CHECKING:
    from ._step import Step
    from ._store import Store

__all__ = ["Plan", "make_plan", "to_dot", "to_mermaid"]


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


def to_mermaid(
    steps: Iterable[Step[Any]],
    providers: Mapping[str, Step[Any]],
    store: Store,
    targets: Iterable[str] | None = None,
) -> str:
    """A Mermaid ``flowchart``: steps as boxes, resources as rounded nodes; see `Pipeline`."""
    steps, resources = _graph(steps, providers, targets)
    rid = {name: f"r{i}" for i, name in enumerate(resources)}
    lines = ["flowchart LR"]
    for name in resources:
        state = _resource_state(name, providers, store)
        label = name if state == "computed" else f"{name}<br/><i>{state}</i>"
        lines.append(f'    {rid[name]}(["{_mermaid_text(label)}"]):::{state}')
    for i, step in enumerate(steps):
        lines.append(f'    s{i}["{_mermaid_text(step.label)}"]:::step')
        for param in step.params:
            lines.append(f"    {rid[param.name]} --> s{i}")
        for name in step.provides:
            lines.append(f"    s{i} --> {rid[name]}")
    lines += [
        "    classDef step fill:#dbe4ff,stroke:#364fc7",
        "    classDef computed fill:#ffffff,stroke:#868e96",
        "    classDef input fill:#fff3bf,stroke:#e67700,stroke-dasharray:4 2",
        "    classDef present fill:#d3f9d8,stroke:#2b8a3e,stroke-width:2px",
    ]
    return "\n".join(lines) + "\n"


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
    steps, resources = _graph(steps, providers, targets)
    lines = [
        "digraph pipeline {",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [color="#495057"];',
    ]
    for name in resources:
        state = _resource_state(name, providers, store)
        label = name if state == "computed" else f"{name}\\n({state})"
        node = _dot_id("resource:" + name)
        lines.append(f"    {node} [label={_dot_label(label)}, {_DOT_STYLE[state]}];")
    for step in steps:
        node = _dot_id("step:" + step.label)
        lines.append(
            f'    {node} [label={_dot_id(step.label)}, shape=box, style="rounded,filled", '
            f'fillcolor="#dbe4ff", color="#364fc7"];'
        )
        for param in step.params:
            lines.append(f"    {_dot_id('resource:' + param.name)} -> {node};")
        for name in step.provides:
            lines.append(f"    {node} -> {_dot_id('resource:' + name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


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
            return plan
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
        needs = ", ".join(f"`{p.name}`" for p in s.params) or "nothing"
        if frame[2] is None:
            plan.reasons[s.label] = f"the target; needs {needs}"
        else:
            plan.reasons[s.label] = f"provides missing `{frame[2]}`; needs {needs}"
    plan.missing.extend(missing)
    for provider, reason in suppressed.items():
        if provider.label not in plan.runs and provider.label not in plan.skips:
            plan.skips.append(provider.label)
            plan.reasons[provider.label] = reason
    return plan
