"""A tiny sequential evaluator of pipeliner_rx's semantics: the oracle of the property tests.

It knows nothing of Rx, tasks or concurrency. A call works out which steps are needed (the
providers of missing resources, transitively), runs them one at a time in topological order and
stores their outputs. It is meant to be obviously correct, not fast.

The rules it encodes (README, "Semantics in short"):

- A present resource suppresses its provider, and so everything upstream of it.
- Only the needed subgraph runs; each step with outputs runs at most once per store.
- A parameter whose resource is neither present nor provided uses its default; without a
  default the resource is missing, and nothing runs.
- A called step whose outputs are all present does not run; the call returns the stored values.
- A step with several outputs returns a tuple; present values win over computed ones, also in
  what a call returns. A step without outputs runs once per call; its return value is the
  call's result.
- A step that raises stores nothing; its dependents do not run; errors are not cached. Unlike
  the library, the oracle goes on running the independent branches after a failure, so that it
  reports every error a concurrent engine might deliver first.

`LiveReference` is the oracle of live stores: the settled state of every resource for given
pushed values, evaluated from scratch in topological order (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

__all__ = ["MISSING", "Err", "Failed", "LiveReference", "Missing", "Reference", "StepSpec"]


@dataclass(frozen=True)
class StepSpec:
    """One step: its name, the resources it needs and provides, and a pure function of them.

    ``fn`` takes the needed resources as keyword arguments and returns one value per output
    (a tuple for several outputs; any value for none). ``defaults`` maps some needed resources
    to the default value of their parameter.
    """

    name: str
    needs: tuple[str, ...]
    provides: tuple[str, ...]
    fn: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)


class Missing(Exception):
    """A call needs resources that nothing can supply (the library's `MissingResourceError`)."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(f"missing: {sorted(names)}")
        self.names = frozenset(names)


class Failed(Exception):
    """A call's result could not be computed: ``errors`` holds what each failed step raised."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        super().__init__(f"failed: {sorted(errors)}")
        self.errors = errors


class Reference:
    """One store: seeded values, the values computed so far and the steps run, in order."""

    def __init__(self, steps: Sequence[StepSpec], seeded: Mapping[str, Any]) -> None:
        self.steps = {spec.name: spec for spec in steps}
        self.providers = {name: spec for spec in steps for name in spec.provides}
        self.values: dict[str, Any] = dict(seeded)
        self.ran: list[str] = []

    def call(self, name: str) -> Any:
        """Call step ``name``, as ``await step()`` would."""
        spec = self.steps[name]
        if spec.provides and all(r in self.values for r in spec.provides):
            return self._stored(spec)
        result = self._run_needed(spec)
        return self._stored(spec) if spec.provides else result

    def resource(self, name: str) -> Any:
        """Get resource ``name``, as ``await pipeline.resource(name)`` would."""
        if name in self.values:
            return self.values[name]
        if name not in self.providers:
            raise Missing({name})
        self._run_needed(self.providers[name])
        return self.values[name]

    def needed(self, spec: StepSpec) -> dict[str, set[str]]:
        """The steps a demand of ``spec`` runs, each mapped to the needed steps it waits for."""
        graph: dict[str, set[str]] = {}
        missing: set[str] = set()
        todo = [spec]
        while todo:
            current = todo.pop()
            if current.name in graph:
                continue
            deps = graph[current.name] = set()
            for need in current.needs:
                if need in self.values:
                    continue
                provider = self.providers.get(need)
                if provider is not None:
                    deps.add(provider.name)
                    todo.append(provider)
                elif need not in current.defaults:
                    missing.add(need)
        if missing:
            raise Missing(missing)
        return graph

    def _run_needed(self, spec: StepSpec) -> Any:
        graph = self.needed(spec)
        errors: dict[str, BaseException] = {}
        result: Any = None
        for name in TopologicalSorter(graph).static_order():
            current = self.steps[name]
            if any(dep in errors for dep in graph[name]):
                errors.setdefault(name, _Skipped())
                continue
            kwargs = {
                need: self.values[need] if need in self.values else current.defaults[need]
                for need in current.needs
            }
            self.ran.append(name)
            try:
                value = current.fn(**kwargs)
                if len(current.provides) > 1:
                    value = tuple(value)  # reading a multi-output value may raise too
            except Exception as exc:
                errors[name] = exc
                continue
            except BaseException as exc:  # a step may raise any BaseException: still its failure
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                errors[name] = exc
                continue
            if name == spec.name:
                result = value
            if len(current.provides) == 1:
                outputs: Sequence[Any] = (value,)
            else:
                outputs = value if current.provides else ()
            for resource, output in zip(current.provides, outputs, strict=True):
                self.values.setdefault(resource, output)  # present values win
        raised = {name: exc for name, exc in errors.items() if not isinstance(exc, _Skipped)}
        if raised:
            raise Failed(raised)
        return result

    def _stored(self, spec: StepSpec) -> Any:
        values = tuple(self.values[r] for r in spec.provides)
        return values[0] if len(values) == 1 else values


class _Skipped(Exception):
    """Marks a step that did not run because a step it needs failed."""


@dataclass(frozen=True)
class Err:
    """In a live state: the resource failed; ``source`` is the step that raised."""

    source: str


class _Unset:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Unset()  # in a live state: waits for an input nobody has pushed


class LiveReference:
    """The settled state of a live store, evaluated from scratch for given pushed values.

    The rules it encodes (README, "Live dataflow"): pushed values are inputs, or pins of
    provided resources (a step whose outputs are all pinned does not run; pinned outputs keep
    the pushed value). A parameter uses its resource if some step provides it or it was
    pushed, else its default, else the resource is `MISSING`. A step with a `MISSING` input
    waits (its outputs are `MISSING`); otherwise a step with a failed input does not run and
    its outputs carry the first failed input's `Err` (in parameter order); otherwise it runs,
    and a step that raises gives `Err(step)`. Laziness, cutoff and cancellation change what
    runs, never the settled state, so the oracle evaluates every step.
    """

    def __init__(self, steps: Sequence[StepSpec]) -> None:
        specs = [spec for spec in steps if spec.provides]
        self.steps = {spec.name: spec for spec in specs}
        self.providers = {name: spec for spec in specs for name in spec.provides}
        graph = {
            spec.name: {self.providers[n].name for n in spec.needs if n in self.providers}
            for spec in specs
        }
        self.order = [self.steps[name] for name in TopologicalSorter(graph).static_order()]

    def state(self, pushed: Mapping[str, Any]) -> dict[str, Any]:
        """Every resource's settled value, `Err` or `MISSING` for these pushed values."""
        state: dict[str, Any] = dict(pushed)
        for spec in self.order:
            outputs = [name for name in spec.provides if name not in pushed]
            if not outputs:
                continue
            kwargs: dict[str, Any] = {}
            missing = False
            error: Err | None = None
            for need in spec.needs:
                value = self.argument(state, spec, need)
                if value is MISSING:
                    missing = True
                elif isinstance(value, Err):
                    error = error or value
                else:
                    kwargs[need] = value
            results: Sequence[Any]
            if missing:
                results = [MISSING] * len(spec.provides)
            elif error is not None:
                results = [error] * len(spec.provides)
            else:
                try:
                    value = spec.fn(**kwargs)
                except Exception:
                    results = [Err(spec.name)] * len(spec.provides)
                else:
                    results = (value,) if len(spec.provides) == 1 else value
            for name, result in zip(spec.provides, results, strict=True):
                if name not in pushed:
                    state[name] = result
        return state

    def argument(self, state: Mapping[str, Any], spec: StepSpec, need: str) -> Any:
        """What parameter ``need`` of ``spec`` receives in ``state`` (a default, or MISSING)."""
        if need in state:
            return state[need]
        return spec.defaults.get(need, MISSING)
