"""LiveStore: a store whose inputs change. Pushes make revisions; only what changed recomputes.

The store's side: loop binding, ``observe`` / ``get`` / ``errors``, closing. Pushes are
coalesced into revisions in `_live_changes`, readers are kept in `_live_readers`, and the
scheduler in `_revisions` does the graph work.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc

from ._events import Events, StepEvent
from ._executors import Executor
from ._live_changes import Changes
from ._live_readers import Readers
from ._revisions import Scheduler
from ._threads import on_loop_thread, run_on_loop, subscribe_on_loop
from .exceptions import LiveStoreClosedError, PipelineError, StoreInUseError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["LiveStats", "LiveStore"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Counts of what a live store did so far.

    Attributes:
        revisions: revisions that changed something (a value, a pin, a step to rerun); pushes
            of equal values and pushes undone in the same loop iteration do not count.
        step_runs: runs of steps started (retries of a run are not counted again).
        cancelled_runs: runs stopped, or whose result was dropped, because an input changed,
            nothing needed them any more, or the store closed.
        cutoffs: reruns whose outputs all equalled the previous values, so that the steps
            below did not rerun on their account.
    """

    revisions: int
    step_runs: int
    cancelled_runs: int
    cutoffs: int


class LiveStore:
    """A store whose inputs change: push new values, and only their downstream recomputes.

    Made by `Pipeline.live`. It is separate from the pipeline's store and from scopes, and
    starts with the pipeline's environment and the arguments of ``live(...)``. Each push makes
    a *revision*; pushes made in the same loop iteration merge into one. Steps run only when
    something observed or awaited needs them, and only when one of their inputs changed; an
    output equal to its previous value does not rerun the steps below it. A step never sees
    inputs from two revisions, and a run whose input changes is cancelled (its result is never
    used). Use it as a context manager (``with`` / ``async with``) to close it.

    Steps that provide nothing do not run in a live store; steps registered after ``live()``
    was called are not part of it. Plain ``def`` steps run on the step's executor, else on the
    pipeline's executor as it was when ``live()`` was called.

    Example:
        >>> async with pipeline.live(price=10.0) as live:
        ...     live.observe("report").subscribe(print)
        ...     live.push(price=10.5)  # `report` is recomputed and printed
        ...     print(await live.get("report"))
    """

    def __init__(
        self,
        *,
        steps: Iterable[Step[Any]],
        providers: Mapping[str, Step[Any]],
        environment: Mapping[str, Any],
        events: Events,
        executor: Executor,
    ) -> None:
        self.id = next(_ids)
        self._errors = Events()
        # The scheduler holds the loop the store is bound to, and whether it is closed.
        self._scheduler = Scheduler(steps, providers, events, self._errors, executor, self.id)
        self._readers = Readers(self._scheduler)
        self._changes = Changes(self._scheduler, self._readers)
        self._tasks: list[asyncio.Task[None]] = []  # cancelled by `close`, awaited by `aclose`
        self._scheduler.apply(1, environment, (), ())

    def __repr__(self) -> str:
        state = "closed" if self._scheduler.closed else f"revision={self._changes.revision}"
        return f"<LiveStore {self.id} {state}>"

    # -- what it is -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The latest revision: the one the latest push, unpin or invalidation made.

        It starts at 1 (the initial values). Its steps may still be running.
        """
        return self._changes.revision

    @property
    def stats(self) -> LiveStats:
        """What the store did so far: revisions, step runs, cancelled runs, cutoffs."""
        settler = self._scheduler.settler
        return LiveStats(
            self._changes.revisions, settler.step_runs, settler.cancelled_runs, settler.cutoffs
        )

    @property
    def errors(self) -> Observable[StepEvent]:
        """An Observable of this store's ``failed`` `StepEvent`s (with their revision).

        It completes when the store closes. A failure also reaches ``pipeline.events``, and
        ``get`` of every resource it affects raises it; ``observe`` streams stay open.
        """
        return self._errors.observable

    # -- changing inputs ------------------------------------------------------------------------

    def push(self, **values: Any) -> int:
        """Set input values, all in one revision; return the revision that includes them.

        Recomputation starts on the next loop iteration, so pushes made in the same iteration
        merge (the latest value wins). Values equal to the current ones (``==``; a comparison
        that raises counts as different) change nothing: if all are equal, no revision is made
        and the current one is returned. Pushing a resource that a step provides *pins* it: the
        pushed value wins and the provider does not run for it (see `unpin`).

        It may be called from any thread: off the event loop's thread it hands the values to
        the loop and returns once they are applied.

        Args:
            **values: resource names and their new values.

        Returns:
            The revision that includes the values.

        Raises:
            LiveStoreClosedError: the store is closed.

        Example:
            >>> live.push(price=10.5, currency="EUR")
            2
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._scheduler.loop:
            return self._push(values)  # the common case: on the store's loop
        return run_on_loop(self._prepare(), lambda: self._push(values))

    def unpin(self, *names: str) -> int:
        """Hand pushed resources back to the steps that provide them; they rerun if needed.

        Args:
            *names: resources that a step provides.

        Returns:
            The revision that includes the change (the current one if none was pinned).

        Raises:
            UnknownTargetError: a name is not a resource of the pipeline.
            ValueError: a name is an input that no step provides.
            CycleError: the providers would need their own output again.
            LiveStoreClosedError: the store is closed.
        """
        return run_on_loop(self._prepare(), lambda: self._unpin(names))

    def invalidate(self, *names: str) -> int:
        """Rerun the providers of these resources and what depends on them, as if an input had
        changed (for an input itself: rerun the steps that read it).

        Args:
            *names: resources of the pipeline.

        Returns:
            The revision that includes the change.

        Raises:
            UnknownTargetError: a name is not a resource of the pipeline.
            LiveStoreClosedError: the store is closed.
        """
        return run_on_loop(self._prepare(), lambda: self._invalidate(names))

    def _push(self, values: dict[str, Any]) -> int:
        self._check_open()
        return self._changes.push(values)

    def _unpin(self, names: tuple[str, ...]) -> int:
        self._check_open()
        return self._changes.unpin(names)

    def _invalidate(self, names: tuple[str, ...]) -> int:
        self._check_open()
        return self._changes.invalidate(names)

    # -- reading --------------------------------------------------------------------------------

    def observe(self, name: str) -> Observable[Any]:
        """An Observable of every consistent value of resource ``name``.

        On subscribe it emits the current consistent value, if there is one, then each new
        one: at most once per revision, in revision order, never a value computed from a mix
        of revisions. Subscribing is the demand that makes the resource's providers run;
        disposing the last subscription withdraws it (runs only it needed are cancelled).
        Failures do not end the stream (see `errors`); it completes when the store closes.
        Emissions happen on the event loop; an observer that raises is reported to the loop's
        exception handler and does not disturb the others.

        Args:
            name: a resource of the pipeline (or one pushed to this store).

        Returns:
            A hot Observable of the resource's values.

        Raises:
            UnknownTargetError: ``name`` is not a resource of the pipeline.

        Example:
            >>> live.observe("report").subscribe(print)
        """
        self._changes.cell(name)

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            loop = self._loop_for_subscribe(name)
            if not on_loop_thread(loop):
                # Subscribed from another thread: do the work on the loop's thread.
                return subscribe_on_loop(loop, lambda: subscribe(observer), observer)
            return self._subscribe(name, observer, loop)

        return Observable(subscribe)

    def _subscribe(
        self, name: str, observer: abc.ObserverBase[Any], loop: asyncio.AbstractEventLoop
    ) -> abc.DisposableBase:
        self._check_open()
        cell = self._changes.cell(name)
        return self._readers.subscribe(cell, observer, loop, self._changes.pinned)

    async def get(self, name: str) -> Any:
        """The value of ``name`` consistent with the current revision (or a later one).

        Computes what is needed, as a subscription would, and waits for it to settle; an input
        that nothing provides and that was not pushed yet is awaited until it is pushed.

        Args:
            name: a resource of the pipeline (or one pushed to this store).

        Returns:
            Its value.

        Raises:
            UnknownTargetError: ``name`` is not a resource of the pipeline.
            CycleError: the providers of ``name`` depend on it.
            LiveStoreClosedError: the store is closed (also while waiting).
            Exception: the exception of the step that failed in that revision, with its type.
        """
        loop = asyncio.get_running_loop()
        self._bind(loop)
        self._check_open()
        cell = self._changes.cell(name)
        return await self._readers.get(cell, loop, self._changes.revision, self._changes.pinned)

    # -- the loop -------------------------------------------------------------------------------

    def _prepare(self) -> asyncio.AbstractEventLoop | None:
        """The loop to hand a change to: the bound one, or the caller's running loop."""
        loop = self._scheduler.loop
        if loop is None or loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                return loop
            self._bind(running)
            return running
        return loop

    def _loop_for_subscribe(self, name: str) -> asyncio.AbstractEventLoop:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._scheduler.loop
        if running is not None and (loop is None or loop.is_closed() or not loop.is_running()):
            self._bind(running)
            return running
        if loop is not None and not loop.is_closed():
            return loop
        raise PipelineError(
            f"observe({name!r}) needs an asyncio event loop: subscribe inside a coroutine (or "
            f"after the live store has been used on a running loop)."
        )

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        old = self._scheduler.loop
        if old is loop:
            return
        if old is not None and not old.is_closed() and old.is_running():
            raise StoreInUseError(self.id)
        self._scheduler.adopt(loop)
        if self._changes.pending:
            loop.call_soon(self._changes.flush)
        loop.call_soon(self._scheduler.drain)

    def _check_open(self) -> None:
        if self._scheduler.closed:
            raise LiveStoreClosedError(self.id)

    # -- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store: cancel running steps, complete every ``observe`` stream and
        `errors`, and fail waiting ``get``s with `LiveStoreClosedError`. Closing twice is
        harmless. ``await aclose()`` also waits until the cancelled steps have finished."""
        self._tasks = run_on_loop(self._scheduler.loop, self._close)

    async def aclose(self) -> None:
        """Close the store (see `close`) and wait until its cancelled steps have finished."""
        self.close()
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks)

    def _close(self) -> list[asyncio.Task[None]]:
        if self._scheduler.closed:
            return []
        tasks = self._scheduler.close()
        self._changes.clear()
        self._readers.close(self.id)
        self._errors.complete()
        return tasks

    def __enter__(self) -> LiveStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LiveStore:
        self._bind(asyncio.get_running_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
