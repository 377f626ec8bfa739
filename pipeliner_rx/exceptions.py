"""The errors pipeliner_rx raises.

Every error of the library derives from `PipelineError`; a user's own exception raised inside a
step keeps its type and reaches the caller with a note naming the step that raised it.

    PipelineError
    ├── MissingResourceError   a needed resource is neither supplied, present nor providable
    ├── CycleError             the providers of a demanded resource depend on themselves
    ├── DuplicateProviderError two different steps provide the same resource
    ├── StepOutputError        a step's return value does not match its ``provides``
    ├── StepPicklingError      a sync step cannot be shipped to a worker process
    └── ResourceConflictError  a resource is given a value different from the one it holds

Registration errors that are plain programming mistakes (a bad ``provides``, ``*args`` or
``**kwargs`` parameters) raise `TypeError`, as Python itself would.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

__all__ = [
    "CycleError",
    "DuplicateProviderError",
    "MissingResourceError",
    "PipelineError",
    "ResourceConflictError",
    "StepOutputError",
    "StepPicklingError",
]


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


class PipelineError(Exception):
    """Base class of every error raised by pipeliner_rx itself."""


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
            f"`{resource}` already holds {current!r}; refusing the different value {new!r}. "
            f"Use a fresh store for new inputs (`pipeline.reset()`, or a scope per run)."
        )


class StepPicklingError(PipelineError, pickle.PicklingError):
    """A sync step cannot be sent to another process (a process pool or a Dask worker).

    Workers receive a step by reference (its module and qualified name) and import it there,
    so the step must be defined at module level of an importable module.

    Attributes:
        step: the step.
        path: its module and qualified name.
        reason: what pickling said.
    """

    def __init__(self, step: str, path: str, reason: str) -> None:
        self.step = step
        self.path = path
        self.reason = reason
        super().__init__(
            f"`{step}` (`{path}`) cannot be sent to a worker process: {reason}. Define the step "
            f"at module level of an importable module, or give it a thread pool "
            f"(`executor=ThreadPoolExecutor()`)."
        )
