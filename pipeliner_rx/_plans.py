"""Compiled plans: the demand walk, done once per target and store state, then reused.

The walk decides which steps a demand runs, in what order, which parameters are inputs and
where defaults apply; it raises `CycleError` and records what is missing. It depends only on
the registry and on which resources are present, so its result is compiled once and reused
while the registry is unchanged: a store's present resources select the compiled plan.
`Pipeline.plan` shows the same compiled object the engine executes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._graph import Drawing, mimebundle, plan_drawing
from .exceptions import CycleError, UnknownTargetError

if TYPE_CHECKING:
    from ._step import Step
    from ._store import Store

__all__ = ["Compiled", "Plan", "Plans", "resolve"]

# Variants kept per target: a target met in many different store states compiles again.
_VARIANTS = 16
# Targets kept: `resource(name)` with ever new names must not grow the cache without bound.
_TARGETS = 1024


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
    _drawing: Drawing = field(default=Drawing(), repr=False, compare=False)

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


class Compiled:
    """One compiled demand walk: the steps to activate, in dependency order, and their links.

    Steps are numbered in the order they start (every step after what it waits on). For each:
    ``deps``, the numbers of the steps it waits on; ``inputs``, the parameters it subscribes
    to (a defaulted one only when something provides it or it is present); ``unprovided``,
    inputs nothing provides, awaited until pushed (lenient demands); ``links``, whether it is a
    shared step read from the pipeline's store; ``via``/``parent``, the resource it was needed
    for and the step that needed it (for error paths). ``top`` are the steps the demand itself
    waits on; ``private`` the number of a target that provides nothing (-1 if none);
    ``missing``, what a strict demand lacks, with the chain of steps needing it.
    """

    __slots__ = (
        "checks",
        "deps",
        "inputs",
        "links",
        "missing",
        "parent",
        "plan",
        "private",
        "steps",
        "top",
        "unprovided",
        "via",
    )

    def __init__(self) -> None:
        self.steps: list[Step[Any]] = []
        self.deps: list[tuple[int, ...]] = []
        self.inputs: list[tuple[str, ...]] = []
        self.unprovided: list[list[str] | None] = []
        self.links: list[bool] = []
        self.via: list[str | None] = []
        self.parent: list[int] = []
        self.top: tuple[int, ...] = ()
        self.private = -1
        self.missing: list[tuple[str, tuple[str, ...]]] = []
        # The presence of each resource the walk looked at: the state this plan is valid for.
        self.checks: tuple[tuple[str, bool], ...] = ()
        self.plan = Plan("")

    def chain(self, index: int) -> tuple[str, ...]:
        """The names of the steps from ``index`` down to the demand's target."""
        names = []
        while index >= 0:
            names.append(self.steps[index].name)
            index = self.parent[index]
        return tuple(names)

    def matches(self, store: Store, supplied: Mapping[str, Any] | None) -> bool:
        """Whether ``store`` (with the call's ``supplied`` values) is in this plan's state."""
        subjects = store.subjects
        for name, was in self.checks:
            subject = subjects.get(name)
            now = subject is not None and subject.is_stopped and subject.has_value
            if not now and supplied:
                now = name in supplied
            if now is not was:
                return False
        return True


class _Frame:
    __slots__ = ("deps", "index", "number", "parent", "step", "unprovided", "via")

    def __init__(self, step: Step[Any], via: str | None, parent: _Frame | None) -> None:
        self.step = step
        self.via = via
        self.parent = parent  # the frame that needed it first; None for the target
        self.number = -1  # its number once walked
        self.index = 0
        self.deps: dict[int, None] = {}  # ordered set of the steps it waits on
        self.unprovided: list[str] | None = None  # made only when there is one


def compile_walk(
    providers: Mapping[str, Step[Any]],
    step: Step[Any] | None,
    names: tuple[str, ...],
    strict: bool,
    in_scope: bool,
    is_present: Callable[[str], bool],
) -> Compiled:
    """Walk what ``step`` (or the resources ``names``) need, depth first with a stack.

    An explicit stack, so depth costs no recursion. Present resources suppress their
    providers; a provider met again on the walk's own path is a `CycleError`; in a scope
    (``in_scope``) a shared provider is a link to the pipeline's store, not walked into.
    """
    compiled = Compiled()
    checks: dict[str, bool] = {}
    number: dict[Step[Any], int] = {}
    on_path: dict[Step[Any], int] = {}
    stack: list[_Frame] = []
    parents: list[_Frame | None] = []  # per numbered step, the frame that needed it
    top: dict[int, None] = {}
    suppressed: dict[Step[Any], str] = {}  # providers not run because what they give is present
    target_skipped = False

    def present(name: str) -> bool:
        found = checks.get(name)
        if found is None:
            found = checks[name] = is_present(name)
        return found

    def chain() -> tuple[str, ...]:
        return tuple(frame.step.name for frame in reversed(stack))

    def add(s: Step[Any], via: str | None, parent: _Frame | None, deps: tuple[int, ...]) -> int:
        index = len(compiled.steps)
        compiled.steps.append(s)
        compiled.deps.append(deps)
        compiled.via.append(via)
        parents.append(parent)
        compiled.links.append(False)
        compiled.unprovided.append(None)
        compiled.inputs.append(())
        return index

    def need(name: str, has_default: bool, frame: _Frame | None) -> None:
        provider = providers.get(name)
        if present(name):
            if provider is not None:
                suppressed.setdefault(provider, f"`{name}` is present")
            return
        if provider is None:
            if not has_default:
                if strict:
                    compiled.missing.append((name, chain()))
                elif frame is not None:
                    if frame.unprovided is None:
                        frame.unprovided = []
                    frame.unprovided.append(name)
            return
        deps = frame.deps if frame is not None else top
        found = number.get(provider)
        if found is not None:
            deps[found] = None
            return
        if provider.shared and in_scope:
            # Demanded in the pipeline's store when the plan runs; its inputs are read there.
            link = add(provider, name, frame, ())
            compiled.links[link] = True
            number[provider] = link
            deps[link] = None
            return
        at = on_path.get(provider)
        if at is not None:
            path = [name]
            for frame_ in reversed(stack[at + 1 :]):
                path += [frame_.step.name, frame_.via or ""]
            raise CycleError([*path, provider.name, name])
        on_path[provider] = len(stack)
        stack.append(_Frame(provider, name, frame))

    def walk() -> None:
        while stack:
            frame = stack[-1]
            params = frame.step.params
            if frame.index < len(params):
                param = params[frame.index]
                frame.index += 1
                need(param.name, param.has_default, frame)
                continue
            stack.pop()
            s = frame.step
            del on_path[s]
            index = frame.number = add(s, frame.via, frame.parent, tuple(frame.deps))
            compiled.unprovided[index] = frame.unprovided
            compiled.inputs[index] = tuple(
                p.name
                for p in s.params
                if not p.has_default or p.name in providers or present(p.name)
            )
            if s is not step or s.provides:
                number[s] = index
            (stack[-1].deps if stack else top)[index] = None

    if step is not None:
        if step.provides and all(present(name) for name in step.provides):
            target_skipped = True
        else:
            on_path[step] = 0
            stack.append(_Frame(step, None, None))
            walk()
            if not step.provides:
                compiled.private = len(compiled.steps) - 1
    for name in names:
        need(name, False, None)
        walk()
    compiled.parent = [-1 if frame is None else frame.number for frame in parents]
    compiled.top = tuple(top)
    compiled.plan = _describe(compiled, step, names, providers, present, suppressed, target_skipped)
    compiled.checks = tuple(checks.items())
    return compiled


def _describe(
    compiled: Compiled,
    step: Step[Any] | None,
    names: tuple[str, ...],
    providers: Mapping[str, Step[Any]],
    present: Callable[[str], bool],
    suppressed: dict[Step[Any], str],
    target_skipped: bool,
) -> Plan:
    """The compiled walk as users read it: what runs and why, what is skipped, what is missing."""
    runs: list[str] = []
    skips: list[str] = []
    reasons: dict[str, str] = {}
    drawn: list[tuple[Step[Any], str]] = []  # each planned step and its style, for the graph
    if step is not None and target_skipped:
        outputs = ", ".join(f"`{name}`" for name in step.provides)
        skips.append(step.label)
        reasons[step.label] = f"its outputs ({outputs}) are present"
        drawn.append((step, "skip"))
    for index, s in enumerate(compiled.steps):
        runs.append(s.label)
        drawn.append((s, "step"))
        needs = ", ".join(f"`{p.name}`" for p in s.params) or "nothing"
        if s is step or (compiled.parent[index] < 0 and compiled.via[index] in names):
            reasons[s.label] = f"the target; needs {needs}"
        elif compiled.links[index]:
            reasons[s.label] = (
                f"provides missing `{compiled.via[index]}`; shared, so it runs once in the "
                f"pipeline's own store"
            )
        else:
            reasons[s.label] = f"provides missing `{compiled.via[index]}`; needs {needs}"
    for provider, reason in suppressed.items():
        if provider.label not in reasons:
            skips.append(provider.label)
            reasons[provider.label] = reason
            drawn.append((provider, "skip"))
    missing = list(dict.fromkeys(name for name, _ in compiled.missing))
    # Drawn resources count as looked at: the drawing is part of what the plan is valid for.
    drawing = plan_drawing(drawn, providers, present)
    target = step.label if step is not None else names[0]
    return Plan(target, runs, skips, missing, reasons, drawing)


def resolve(
    target: Step[Any] | str, steps: Iterable[Step[Any]], providers: Mapping[str, Step[Any]]
) -> tuple[Step[Any] | None, tuple[str, ...]]:
    """What ``target`` plans: a resource some step provides, else a step (by label), or a step."""
    if not isinstance(target, str):
        return target, ()
    if target in providers:
        return None, (target,)
    steps = list(steps)
    for step in steps:
        if step.label == target:
            return step, ()
    raise UnknownTargetError(target, [s.label for s in steps])


class Plans:
    """The compiled plans of one pipeline, by target and store state, until the registry changes."""

    __slots__ = ("_cache", "_providers")

    def __init__(self, providers: Mapping[str, Step[Any]]) -> None:
        self._providers = providers
        self._cache: dict[tuple[Any, ...], list[Compiled]] = {}

    def __len__(self) -> int:
        return sum(len(variants) for variants in self._cache.values())

    def clear(self) -> None:
        """Forget every plan (a step was registered: walks may differ now)."""
        self._cache.clear()

    def get(
        self,
        store: Store,
        step: Step[Any] | None,
        names: tuple[str, ...],
        strict: bool,
        supplied: Mapping[str, Any] | None = None,
    ) -> Compiled:
        """The plan of ``step`` (or ``names``) for ``store``'s state, compiled if new.

        ``supplied`` values (a call's keyword arguments) count as present.

        Raises:
            CycleError: the providers needed form a cycle.
        """
        key = (step, names, strict, store.root is not None)
        variants = self._cache.get(key)
        if variants is None:
            if len(self._cache) >= _TARGETS:
                self._cache.clear()
            variants = self._cache[key] = []
        else:
            for compiled in variants:
                if compiled.matches(store, supplied):
                    return compiled

        def is_present(name: str) -> bool:
            return store.present(name) or bool(supplied and name in supplied)

        compiled = compile_walk(
            self._providers, step, names, strict, store.root is not None, is_present
        )
        if len(variants) >= _VARIANTS:
            del variants[0]
        variants.append(compiled)
        return compiled
