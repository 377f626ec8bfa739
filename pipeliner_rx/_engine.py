"""Engine: what the engine needs of one pipeline, in one object, and the caller's side of it.

A `Pipeline` is the user's facade; its `Engine` holds the registry (steps, providers), the
environment, the pipeline's own store, the events, the scope variable, the executor and the
compiled plans. Every other module reaches these through the engine, never through the
pipeline's private attributes. Step calls and `resource` are served here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from reactivex.subject import AsyncSubject

from ._activation import Activation, release
from ._demand import Listener, activate
from ._events import Events, StepEvent
from ._executors import Executor
from ._plans import Plans
from ._rx import check_name
from ._store import Store, is_present
from ._threads import run_on_loop
from .exceptions import DuplicateProviderError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Engine"]

logger = logging.getLogger("pipeliner_rx")


class Engine:
    """The registry, stores, events, scope variable, executor and plans of one pipeline."""

    __slots__ = (
        "by_key",
        "environment",
        "events",
        "executor",
        "namesakes",
        "plans",
        "providers",
        "scope_var",
        "steps",
        "store",
    )

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.steps: dict[Step[Any], None] = {}  # in registration order
        self.by_key: dict[tuple[str, str], Step[Any]] = {}  # the latest step per definition
        self.namesakes: dict[str, int] = {}  # steps registered per name, for unique labels
        self.providers: dict[str, Step[Any]] = {}
        self.environment: dict[str, Any] = {}
        self.store = Store()
        self.events = Events()
        # The current scope's store, per pipeline; it follows asyncio tasks like any ContextVar.
        self.scope_var: ContextVar[Store | None] = ContextVar("pipeliner_rx_scope", default=None)
        self.plans = Plans(self.providers)

    # -- registration -------------------------------------------------------------------------

    def register(self, step: Step[Any]) -> Step[Any]:
        """Add ``step`` (or let it replace its earlier definition); plans are compiled anew."""
        old = self.by_key.get(step.key)
        if old is not None and not step.replaces(old):
            old = None
        for name in step.provides:
            existing = self.providers.get(name)
            if existing is not None and existing is not old:
                raise DuplicateProviderError(name, step.label, existing.label)
        if old is not None:
            # The same definition run again (a notebook cell): it replaces the earlier one.
            for name in old.provides:
                del self.providers[name]
            del self.steps[old]
            step.label = old.label
        else:
            namesakes = self.namesakes.get(step.name, 0)
            if namesakes:
                step.label = f"{step.name}#{namesakes + 1}"
            self.namesakes[step.name] = namesakes + 1
        self.steps[step] = None
        self.by_key[step.key] = step
        for name in step.provides:
            self.providers[name] = step
        self.plans.clear()
        return step

    # -- stores -------------------------------------------------------------------------------

    def current_store(self) -> Store:
        """The store of the scope the caller is in, else the pipeline's own."""
        return self.scope_var.get() or self.store

    def push(self, store: Store, resources: dict[str, Any]) -> None:
        """Set ``resources`` in ``store``, from any thread (handed to the loop's thread)."""
        run_on_loop(store.loop, lambda: store.push(resources))

    # -- the caller's side --------------------------------------------------------------------

    async def resource(
        self,
        store: Store,
        name: str,
        strict: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (a documented bound)
    ) -> Any:
        """The value of ``name`` in ``store``, demanding its providers; see `Pipeline.resource`."""
        if timeout is not None:
            if not timeout >= 0:
                raise ValueError(f"`timeout` must be seconds >= 0 or None; got {timeout!r}.")
            try:
                async with asyncio.timeout(timeout) as deadline:
                    return await self.resource(store, name, strict)
            except TimeoutError:
                if deadline.expired():
                    raise TimeoutError(
                        f"`{name}` had no value within {timeout} s. Its demand is withdrawn; "
                        f"check that something provides or pushes `{name}`, or wait longer."
                    ) from None
                raise
        check_name(name)
        loop = asyncio.get_running_loop()
        store.bind(loop)
        subject = store.subject(name)
        if is_present(subject):
            return subject.value
        hint = (
            "Include the missing resources in each item (or in the scope's arguments)."
            if strict
            else None
        )
        demands = activate(self, store, names=(name,), strict=strict, hint=hint)
        values = await wait(loop, demands, [subject], f"`{name}`")
        return values[0]

    async def call(self, step: Step[Any], resources: dict[str, Any]) -> Any:
        """Compute ``step`` in the current store with the call's ``resources``."""
        loop = asyncio.get_running_loop()
        store = self.current_store()
        store.bind(loop)
        if resources:
            store.check(resources)  # a conflict rejects the call before anything changes
        provides = step.provides
        sources: Sequence[AsyncSubject[Any]]
        if provides:
            sources = [store.subject(name) for name in provides]
            if all(is_present(subject) for subject in sources):
                if resources:
                    store.push(resources)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("skip %s: its outputs are present", step.label)
                if self.events.observers:
                    self.events.emit(StepEvent(step.label, "skipped", scope=store.id))
                values = [subject.value for subject in sources]
                return values[0] if len(values) == 1 else tuple(values)
        if step.shared and store.root is not None:
            # Read from the pipeline's store, where it runs once for every scope.
            demands = activate(self, store, names=provides, strict=True, supplied=resources)
        else:
            demands = activate(self, store, step=step, strict=True, supplied=resources)
        if not provides:
            sources = demands[0].outputs  # the private result of a step that provides nothing
        values = await wait(loop, demands, sources, f"`{step.label}`")
        return values[0] if len(values) == 1 else tuple(values)


async def wait(
    loop: asyncio.AbstractEventLoop,
    demands: list[Activation],
    sources: Sequence[AsyncSubject[Any]],
    what: str,
) -> list[Any]:
    """Await the first value of each source; withdraw ``demands`` however the wait ends."""
    for source in sources:
        if not (source.is_stopped and source.has_value):
            break
    else:
        # Already there (computed before, or supplied): no future, no subscription.
        release(demands)
        return [source.value for source in sources]
    future: asyncio.Future[list[Any]] = loop.create_future()

    def ready(values: list[Any]) -> None:
        if not future.done():
            future.set_result(values)

    def failed(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    listener = Listener(demands, sources, what, ready, failed)
    try:
        return await future
    finally:
        listener.withdraw()  # the caller went away first (cancelled, timed out)
