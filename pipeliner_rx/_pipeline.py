"""Pipeline: the registry of steps, its provider map and its store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, overload

from reactivex.subject import AsyncSubject

from ._activation import Activation, activate, failure_chain, release
from ._join import Join
from ._step import Provides, Step
from ._store import Store, is_present
from .exceptions import DuplicateProviderError, PipelineError

__all__ = ["Pipeline", "StepDecorator"]

R = TypeVar("R")

logger = logging.getLogger("pipeliner_rx")


class StepDecorator(Protocol):
    """What ``step(provides=...)`` returns: turns a function into a `Step`."""

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def __call__(self, fn: Callable[..., R], /) -> Step[R]: ...


class Pipeline:
    """A registry of steps and the store of resources they compute.

    Register steps with `step`; call a step to compute it. Every resource of the store is a
    ``reactivex`` ``AsyncSubject``; a call activates only the providers of what is missing, each
    at most once per store, and runs them concurrently where they are independent.

    Example:
        >>> pipeline = Pipeline()
        >>> @pipeline.step(provides="double")
        ... async def twice(x):
        ...     return 2 * x
        >>> asyncio.run(twice(x=21))
        42
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], Step[Any]] = {}
        self._providers: dict[str, Step[Any]] = {}
        self._environment: dict[str, Any] = {}
        self._store = Store()

    def __repr__(self) -> str:
        return f"<Pipeline steps={len(self._steps)}>"

    @property
    def steps(self) -> tuple[Step[Any], ...]:
        """The registered steps, in registration order."""
        return tuple(self._steps.values())

    # -- registration -------------------------------------------------------------------------

    @overload
    def step(self, provides: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def step(self, provides: Provides = None) -> StepDecorator: ...

    def step(self, provides: Provides | Callable[..., Any] = None) -> Step[Any] | StepDecorator:
        """Register a function as a step of this pipeline.

        Each parameter name of the function is a resource it needs; ``provides`` names the
        resources its return value becomes. ``@step`` with no arguments registers a step that
        provides nothing. The returned `Step` keeps the function's name, docstring, signature
        and ``__wrapped__``; calling it returns a coroutine computing the step.

        Args:
            provides: a resource name, a tuple or list of names (the function then returns a
                tuple or list of as many values), or None or empty for no outputs.

        Returns:
            A decorator registering the function and returning its `Step`.

        Raises:
            TypeError: ``provides`` is malformed, or the function takes ``*args``,
                ``**kwargs`` or positional-only parameters.
            DuplicateProviderError: another step already provides one of the resources.

        Example:
            >>> @pipeline.step(provides=("low", "high"))
            ... async def bounds(values):
            ...     return min(values), max(values)
        """
        if callable(provides):
            return self._register(provides, None)

        def decorator(fn: Callable[..., Any], /) -> Step[Any]:
            return self._register(fn, provides)

        return decorator

    def _register(self, fn: Callable[..., Any], provides: Provides) -> Step[Any]:
        step: Step[Any] = Step(fn, provides, self)
        old = self._steps.get(step.key)
        for name in step.provides:
            existing = self._providers.get(name)
            if existing is not None and existing is not old:
                raise DuplicateProviderError(name, step.name, existing.name)
        if old is not None:
            # Same module and qualified name: a re-run definition replaces the earlier one.
            for name in old.provides:
                del self._providers[name]
            del self._steps[step.key]
        self._steps[step.key] = step
        for name in step.provides:
            self._providers[name] = step
        return step

    # -- resources ----------------------------------------------------------------------------

    def _current_store(self) -> Store:
        return self._store

    def add_environment_resources(self, **resources: Any) -> None:
        """Set resources of the store, waking everything that waits on them.

        A present resource suppresses its provider. Call it from the event loop's thread (or
        before the loop starts).

        Args:
            **resources: resource names and their values.

        Raises:
            ResourceConflictError: a resource already holds a different value; nothing is set.
        """
        self._current_store().push(resources)
        self._environment.update(resources)

    def resource_ready(self, name: str) -> bool:
        """Whether the resource ``name`` holds a value in the current store."""
        return self._current_store().present(name)

    async def resource(self, name: str) -> Any:
        """Return the value of a resource, computing it if needed.

        A missing resource demands its provider (and what that needs, transitively); a resource
        that nothing provides is awaited until someone pushes it with
        `add_environment_resources`.

        Args:
            name: the resource.

        Returns:
            Its value.

        Raises:
            CycleError: the providers of ``name`` depend on it.
            Exception: whatever a step on the way raised, with its original type.
        """
        loop = asyncio.get_running_loop()
        store = self._current_store()
        store.bind(loop)
        subject = store.subject(name)
        if is_present(subject):
            return subject.value
        demands = activate(store, self._providers, names=(name,), strict=False)
        values = await _wait(loop, demands, [subject], f"`{name}`")
        return values[0]

    def reset(self) -> None:
        """Empty the store: cancel running steps and drop every value. Steps stay registered.

        Whoever still awaits a missing resource fails with `PipelineError`.
        """
        self._environment.clear()
        self._store.clear(
            PipelineError("The store was reset while this resource was awaited; call again.")
        )

    # -- calling ------------------------------------------------------------------------------

    async def _call(self, step: Step[Any], resources: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        store = self._current_store()
        store.bind(loop)
        if resources:
            store.push(resources)
        provides = step.provides
        sources: Sequence[AsyncSubject[Any]]
        if provides:
            sources = [store.subject(name) for name in provides]
            if all(is_present(subject) for subject in sources):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("skip %s: its outputs are present", step.name)
                values = [subject.value for subject in sources]
                return values[0] if len(values) == 1 else tuple(values)
            running = store.active.get(step)
            if running is not None:
                running.demand += 1
                demands = [running]
            else:
                demands = activate(store, self._providers, step=step, strict=True)
        else:
            demands = activate(store, self._providers, step=step, strict=True)
            sources = demands[0].outputs
        values = await _wait(loop, demands, sources, f"`{step.name}`")
        return values[0] if len(values) == 1 else tuple(values)


async def _wait(
    loop: asyncio.AbstractEventLoop,
    demands: list[Activation],
    sources: Sequence[AsyncSubject[Any]],
    what: str,
) -> list[Any]:
    """Await the first value of each source; withdraw ``demands`` if the caller goes away."""
    future: asyncio.Future[list[Any]] = loop.create_future()

    def ready(values: list[Any]) -> None:
        if not future.done():
            future.set_result(values)

    def failed(error: Exception, index: int) -> None:
        if not future.done():
            future.set_exception(error)

    join = Join(sources, ready, failed)
    try:
        return await future
    except asyncio.CancelledError:
        join.dispose()
        release(demands)
        raise
    except Exception as exc:
        if demands:
            chain = failure_chain(demands[0])
            if len(chain) > 1:
                note = f"{what} could not be computed: {' -> '.join(chain)}."
                if note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
        raise
