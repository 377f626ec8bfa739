"""The errors pipeliner_rx raises.

Every error of the library derives from `PipelineError`; a user's own exception raised inside a
step keeps its type and reaches the caller with a note naming the step that raised it.

    PipelineError
    ├── MissingResourceError   a needed resource is neither supplied, present nor providable
    ├── CycleError             the providers of a demanded resource depend on themselves
    ├── DuplicateProviderError two different steps provide the same resource
    ├── StepOutputError        a step's return value does not match its ``provides``
    ├── StepPicklingError      a sync step, or one of its arguments, cannot be shipped to a worker
    ├── ResourceConflictError  a resource is given a value different from the one it holds
    ├── ScopeClosedError       a scope (or live store) is used after it was closed
    │   └── LiveStoreClosedError   a live store is used after it was closed
    ├── UnknownTargetError     a target names neither a resource nor a step of the pipeline
    └── StoreInUseError        a store is used from a second running event loop at once

Registration errors that are plain programming mistakes (a bad ``provides``, ``*args`` or
``**kwargs`` parameters, a resource name that is not a string) raise `TypeError`, as Python
itself would.

Every error survives a pickle round trip with its fields and notes (process pools ship them),
and shows values with a ``repr`` cut to about 200 characters.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from ._format import short_repr

__all__ = [
    "CycleError",
    "DuplicateProviderError",
    "LiveStoreClosedError",
    "MissingResourceError",
    "PipelineError",
    "ResourceConflictError",
    "ScopeClosedError",
    "StepOutputError",
    "StepPicklingError",
    "StoreInUseError",
    "UnknownTargetError",
]


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _rebuild(cls: type[PipelineError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class PipelineError(Exception):
    """Base class of every error raised by pipeliner_rx itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields (and notes), not by calling ``__init__`` with the message:
        # the subclasses take structured arguments, and a process pool unpickles what a worker
        # raised.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class MissingResourceError(PipelineError):
    """A step call needs a resource that nothing can supply.

    Raised at call time, before any step runs, when a needed resource is neither passed to the
    call, present in the store, provided by a registered step, nor defaulted by the parameter.

    Attributes:
        missing: one ``(resource, needed_by)`` pair per missing resource; ``needed_by`` is the
            chain of steps from the one that needs the resource up to the called step.
        resource: the first missing resource.
        needed_by: the chain of the first missing resource.
        step: the called step.
    """

    def __init__(
        self, missing: Sequence[tuple[str, tuple[str, ...]]], step: str, hint: str | None = None
    ) -> None:
        self.missing = tuple(missing)
        self.resource, self.needed_by = self.missing[0]
        self.step = step
        chains: dict[str, list[tuple[str, ...]]] = {}
        for resource, chain in self.missing:
            chains.setdefault(resource, []).append(chain)
        lines = []
        for resource, needed in chains.items():
            by = " and by ".join(" <- ".join(f"`{s}`" for s in chain) for chain in needed if chain)
            lines.append(
                f"No step provides `{resource}`, needed by {by}."
                if by
                else f"No step provides `{resource}` and no value was given for it."
            )
        kwargs = ", ".join(f"{resource}=..." for resource in chains)
        lines.append(
            hint
            or f"Pass {'it' if len(chains) == 1 else 'them'} to the call "
            f"(`{step}({kwargs})`) or with `add_environment_resources({kwargs})`."
        )
        super().__init__(" ".join(lines))


class CycleError(PipelineError):
    """The providers of a demanded resource depend on their own output.

    Attributes:
        path: the cycle in data-flow order, alternating resources and steps and ending where it
            starts, e.g. ``("a", "make_b", "b", "make_a", "a")``.
        resource: the resource that closes the cycle.
    """

    def __init__(self, path: Sequence[str]) -> None:
        self.path = tuple(path)
        self.resource = self.path[0]
        steps = self.path[1::2]
        super().__init__(
            f"The steps {_names(steps)} form a cycle: {' -> '.join(self.path)}. "
            f"Supply one of the resources of the cycle to the call, or change the steps so "
            f"that none of them needs what it provides."
        )


class DuplicateProviderError(PipelineError):
    """A step provides a resource that another registered step already provides.

    Re-registering a function with the same module and qualified name is not a duplicate: it
    replaces the earlier registration (notebooks re-run cells).

    Attributes:
        resource: the resource provided twice.
        step: the step being registered.
        existing: the step that already provides it.
    """

    def __init__(self, resource: str, step: str, existing: str) -> None:
        self.resource = resource
        self.step = step
        self.existing = existing
        super().__init__(
            f"`{step}` provides `{resource}`, which `{existing}` already provides. "
            f"Rename one of the resources, or register the steps on different `Pipeline`s."
        )


class StepOutputError(PipelineError):
    """A step returned a value that does not match its ``provides``.

    A step with several outputs must return a tuple or list of exactly that many values. Every
    output of the step fails with this error.

    Attributes:
        step: the step.
        provides: its declared outputs.
        value: what it returned.
    """

    def __init__(self, step: str, provides: Sequence[str], value: object) -> None:
        self.step = step
        self.provides = tuple(provides)
        self.value = value
        if isinstance(value, (tuple, list)):
            got = f"{len(value)} values"
        else:
            got = f"a single `{type(value).__name__}`"
        super().__init__(
            f"`{step}` returned {got} for its {len(self.provides)} outputs "
            f"({_names(self.provides)}). Return a tuple of exactly {len(self.provides)} values, "
            f"or change `provides`."
        )


class ResourceConflictError(PipelineError):
    """A resource is given a value different from the one it already holds.

    Equal values are accepted. Computing on with the old value would silently give stale
    results, so the new value is refused and nothing is changed.

    Attributes:
        resource: the resource.
        current: the value it holds.
        new: the value that was refused.
    """

    def __init__(self, resource: str, current: object, new: object) -> None:
        self.resource = resource
        self.current = current
        self.new = new
        super().__init__(
            f"`{resource}` already holds {short_repr(current)}; refusing the different value "
            f"{short_repr(new)}. "
            f"Use a fresh store for new inputs (`pipeline.reset()`, or a scope per run)."
        )


class StepPicklingError(PipelineError, pickle.PicklingError):
    """A sync step, or one of its arguments, cannot be sent to another process.

    Workers (a process pool or Dask) receive a step by reference (its module and qualified
    name) and import it there, so the step must be defined at module level of an importable
    module; its arguments travel by pickle.

    Attributes:
        step: the step.
        path: its module and qualified name.
        reason: what pickling said.
        argument: the argument that cannot be pickled, or None when the step itself cannot.
    """

    def __init__(self, step: str, path: str, reason: str, argument: str | None = None) -> None:
        self.step = step
        self.path = path
        self.reason = reason
        self.argument = argument
        if argument is None:
            message = (
                f"`{step}` (`{path}`) cannot be sent to a worker process: {reason}. Define the "
                f"step at module level of an importable module, or give it a thread pool "
                f"(`executor=ThreadPoolExecutor()`)."
            )
        else:
            message = (
                f"The argument `{argument}` of `{step}` cannot be sent to a worker process: "
                f"{reason}. Give the step a value that pickles, or a thread pool "
                f"(`executor=ThreadPoolExecutor()`)."
            )
        super().__init__(message)


class ScopeClosedError(PipelineError):
    """A scope (or another store with an end) is used after it was closed.

    Raised to a call, push or subscription made after the scope was left, and to whoever still
    awaited one of its missing resources when it was closed.

    Attributes:
        scope: the id of the scope.
    """

    def __init__(self, scope: int) -> None:
        self.scope = scope
        super().__init__(
            f"Scope {scope} is closed: it was left before its work finished. Await the results "
            f"you need inside the scope (`async with pipeline.scope(...):`), or open a new one."
        )


class LiveStoreClosedError(ScopeClosedError):
    """A live store (`Pipeline.live`) is used after it was closed.

    Raised to a push, ``get`` or subscription made after the live store was closed, and to
    every ``get`` still waiting when it was closed. A `ScopeClosedError`, so code that handles
    closed scopes handles closed live stores too.

    Attributes:
        scope: the id of the live store.
    """

    def __init__(self, scope: int) -> None:
        self.scope = scope
        PipelineError.__init__(
            self,
            f"Live store {scope} is closed. Push, `get` and `observe` only while it is open "
            f"(inside `with pipeline.live(...)`), or open a new live store.",
        )


class UnknownTargetError(PipelineError):
    """A target names neither a resource nor a step of the pipeline.

    Attributes:
        target: the name that was given.
        choices: the names of the pipeline's steps.
    """

    def __init__(self, target: str, choices: Sequence[str]) -> None:
        self.target = target
        self.choices = tuple(choices)
        listed = _names(self.choices[:20]) + (", ..." if len(self.choices) > 20 else "")
        super().__init__(
            f"`{target}` is neither a resource nor a step of this pipeline. Pick one of "
            f"{listed or 'its steps (it has none: register steps with `@pipeline.step`)'}."
        )


class StoreInUseError(PipelineError):
    """A store is used from a second running event loop while its first loop still uses it.

    A store's steps, subjects and waiters belong to one event loop. Another thread with a loop
    of its own (or ``asyncio.run`` inside a sync step) must use a store of its own.

    Attributes:
        scope: the id of the store: 0 for the pipeline's own store, a scope's id otherwise.
    """

    def __init__(self, scope: int) -> None:
        self.scope = scope
        where = "The pipeline's store" if scope == 0 else f"Scope {scope}"
        super().__init__(
            f"{where} is in use by another running event loop. Open a scope per thread "
            f"(`with pipeline.scope(...):`), or await the call instead of running a new loop "
            f"with `asyncio.run` inside a step."
        )
