"""Scope: a store of its own, bound to a context variable so that it follows asyncio tasks."""

from __future__ import annotations

import asyncio
import itertools
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc

from ._graph import downstream
from ._rx import check_name, feed, observe
from ._store import Store, same
from .exceptions import PipelineError, ScopeClosedError

if TYPE_CHECKING:
    from ._engine import Engine
    from ._pipeline import Pipeline
    from ._step import Step

__all__ = ["Scope", "compute_in"]

_ids = itertools.count(1)


class Scope:
    """A private store over a pipeline: one run, one request, one item of a stream.

    Inside ``with scope:`` or ``async with scope:`` (a context variable, so it follows the
    asyncio tasks created inside), step calls, `Pipeline.resource`, `Pipeline.resource_ready` and
    `Pipeline.add_environment_resources` of the pipeline act on the scope's store. It starts
    with the values pushed to the pipeline with ``add_environment_resources`` (not the values
    its steps computed), then, for a scope opened inside another scope, the values present in
    the enclosing scope, overridden by the scope's own arguments. Nothing computed in a scope
    leaks into the pipeline's store or another scope. Shared steps (``shared=True``) are not
    run per scope: they run once in the pipeline's store, and scopes read their outputs.

    Leaving the scope cancels its still-running steps (``async with`` waits until they have
    finished) and fails whoever still awaits one of its missing resources.

    Example:
        >>> async def handle(request_id, divisor):
        ...     async with pipeline.scope(divisor=divisor):
        ...         return await get_division()
    """

    def __init__(self, engine: Engine, pipeline: Pipeline, resources: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.id = next(_ids)
        self._engine = engine
        self._store = Store(self.id, engine.store)
        # A scope opened inside another starts from what the enclosing one holds, less what
        # was computed from the values this scope gives differently (those would be stale).
        enclosing = engine.scope_var.get()
        inherited = enclosing.present_values() if enclosing is not None else {}
        if inherited and resources:
            changed = [
                name
                for name, value in resources.items()
                if name not in inherited or not same(inherited[name], value)
            ]
            for name in downstream(pipeline.steps, changed):
                inherited.pop(name, None)
        self._store.seed({**engine.environment, **inherited, **resources})
        self._tokens: list[Token[Store | None]] = []

    def __repr__(self) -> str:
        return f"<Scope {self.id} of {self.pipeline!r}>"

    # -- entering and leaving -----------------------------------------------------------------

    def __enter__(self) -> Scope:
        if self._store.closed:
            raise ScopeClosedError(self.id)
        if self._tokens:
            # Two tasks inside one scope would each leave it, closing it under the other.
            raise PipelineError(
                f"Scope {self.id} is entered already; a scope is entered once. Open a scope per "
                f"task (`async with pipeline.scope(...):`), or pass the scope's tasks their work "
                f"from inside it."
            )
        self._tokens.append(self._engine.scope_var.set(self._store))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine.scope_var.reset(self._tokens.pop())
        self.close()

    async def __aenter__(self) -> Scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine.scope_var.reset(self._tokens.pop())
        tasks = self.close()
        if tasks:
            await asyncio.wait(tasks)

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel the scope's running steps and fail its waiters; return the cancelled tasks."""
        store = self._store
        tasks = [
            a.task
            for a in [*store.active.values(), *store.private]
            if a.task is not None and not a.task.done()
        ]
        tasks += store.stopping  # cancelled already, not yet finished
        store.closed = True
        store.clear(lambda: ScopeClosedError(self.id))
        return tasks

    # -- the scope's store --------------------------------------------------------------------

    async def resource(self, name: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (a documented bound)
        """Return a resource of this scope, computing it if needed; see `Pipeline.resource`."""
        return await self._engine.resource(self._store, name, timeout=timeout)

    def resource_ready(self, name: str) -> bool:
        """Whether a resource of this scope holds a value."""
        check_name(name)
        return self._store.present(name)

    def add_environment_resources(self, **resources: Any) -> None:
        """Set resources of this scope only; see `Pipeline.add_environment_resources`."""
        self._engine.push(self._store, resources)

    def observe(self, name: str) -> Observable[Any]:
        """An Observable of a resource of this scope; see `Pipeline.observe`."""
        return observe(self._engine, self._store, name)

    def feed(self, name: str, observable: Observable[Any]) -> abc.DisposableBase:
        """Make the first item of ``observable`` a resource of this scope; see `Pipeline.feed`."""
        return feed(self._store, name, observable)


async def compute_in(scope: Scope, target: str | Step[Any]) -> Any:
    """Compute a target in ``scope`` strictly: a missing input is an error, not a wait."""
    engine = scope._engine
    if isinstance(target, str):
        return await engine.resource(scope._store, target, strict=True)
    token = engine.scope_var.set(scope._store)
    try:
        return await target()
    finally:
        engine.scope_var.reset(token)
