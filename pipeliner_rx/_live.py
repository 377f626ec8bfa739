"""LiveStore: a store whose inputs change. Pushes make revisions; only what changed recomputes.

The store's side: loop binding, coalescing pushes into revisions, ``observe`` / ``get`` /
``errors``, closing. The scheduler in `_revisions` does the graph work.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from ._cells import Cell
from ._events import Events, StepEvent
from ._executors import Executor
from ._revisions import Scheduler
from ._store import same
from ._threads import call_on_loop, guarded, on_loop_thread, run_on_loop
from .exceptions import (
    CycleError,
    LiveStoreClosedError,
    PipelineError,
    StoreInUseError,
    UnknownTargetError,
)

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


class _Observer:
    """An ``observe`` subscription: sends each new settled value of its cell."""

    __slots__ = ("active", "loop", "observer", "stamp")

    def __init__(self, observer: abc.ObserverBase[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.observer = observer
        self.loop = loop
        self.stamp = 0  # the value stamp last sent
        self.active = True

    def update(self, cell: Cell) -> None:
        if self.active and cell.error is None and cell.has_value and cell.value_stamp > self.stamp:
            self.stamp = cell.value_stamp
            guarded(self.loop, self.observer.on_next, cell.value)


class _Waiter:
    """A ``get`` waiting for its cell to settle in (at least) its target revision."""

    __slots__ = ("cell", "future", "scheduler", "target")

    def __init__(
        self, cell: Cell, future: asyncio.Future[Any], scheduler: Scheduler, target: int
    ) -> None:
        self.cell = cell
        self.future = future
        self.scheduler = scheduler
        self.target = target

    def update(self, cell: Cell) -> None:
        future = self.future
        if future.done() or self.scheduler.revision < self.target or not cell.settled:
            return
        if cell.error is not None:
            future.set_exception(cell.error)
        elif cell.has_value:
            future.set_result(cell.value)


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
        self._scheduler = Scheduler(steps, providers, events, self._errors, executor, self.id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revision = 1
        # The pending revision: pushes, unpins and invalidations made since the last flush.
        self._values: dict[str, Any] = {}
        self._unpins: set[str] = set()
        self._invalid: set[str] = set()
        self._pending = False
        self._closed = False
        self._observers: set[_Observer] = set()
        self._waiters: set[_Waiter] = set()
        self._revisions = 0
        self._tasks: list[asyncio.Task[None]] = []  # cancelled by `close`, awaited by `aclose`
        self._scheduler.apply(1, environment, (), ())

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"revision={self._revision}"
        return f"<LiveStore {self.id} {state}>"

    # -- what it is -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The latest revision: the one the latest push, unpin or invalidation made.

        It starts at 1 (the initial values). Its steps may still be running.
        """
        return self._revision

    @property
    def stats(self) -> LiveStats:
        """What the store did so far: revisions, step runs, cancelled runs, cutoffs."""
        scheduler = self._scheduler
        return LiveStats(
            self._revisions, scheduler.step_runs, scheduler.cancelled_runs, scheduler.cutoffs
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
        if running is not None and running is self._loop:
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
        cells = self._scheduler.cells
        pending, unpins = self._values, self._unpins
        fresh = {}
        for name, value in values.items():
            if name in pending:
                if same(pending[name], value):
                    continue
            elif name not in unpins:
                cell = cells.get(name)
                if (
                    cell is not None
                    and (cell.pinned or cell.provider is None)
                    and cell.has_value
                    and cell.error is None
                    and same(cell.value, value)
                ):
                    continue
            fresh[name] = value
        if not fresh:
            return self._revision
        for name, value in fresh.items():
            pending[name] = value
            unpins.discard(name)
        return self._change()

    def _unpin(self, names: tuple[str, ...]) -> int:
        self._check_open()
        scheduler = self._scheduler
        for name in names:
            cell = self._cell(name)
            if cell.provider is None:
                raise ValueError(
                    f"`{name}` is an input: no step provides it, so there is no provider to "
                    f"hand it back to. Push a new value instead (`push({name}=...)`)."
                )
        wanted = [
            name
            for name in dict.fromkeys(names)
            if name in self._values or (scheduler.cells[name].pinned and name not in self._unpins)
        ]
        if not wanted:
            return self._revision
        after = set(wanted)

        def pinned(cell: Cell) -> bool:  # as it will be once this revision is applied
            if cell.name in self._values and cell.name not in after:
                return True
            return cell.pinned and cell.name not in after and cell.name not in self._unpins

        for name in wanted:
            cell = scheduler.cells[name]
            provider = cell.provider
            if cell.demand and provider is not None:
                path = scheduler.cycle(provider, pinned, idle_only=False)
                if path is not None:
                    raise CycleError(path)
        for name in wanted:
            self._values.pop(name, None)
            if scheduler.cells[name].pinned:
                self._unpins.add(name)
        return self._change()

    def _invalidate(self, names: tuple[str, ...]) -> int:
        self._check_open()
        for name in names:
            self._cell(name)
        if not names:
            return self._revision
        self._invalid.update(names)
        return self._change()

    def _change(self) -> int:
        """Something is pending: the next revision, flushed on the next loop iteration."""
        if not self._pending:
            self._pending = True
            self._revision += 1
            loop = self._loop
            if loop is None:
                self._flush()  # no loop yet: nothing can be observed or running
            elif not loop.is_closed():
                loop.call_soon(self._flush)
            # A closed loop: flushed when the store is next used on a running loop.
        return self._revision

    def _flush(self) -> None:
        if not self._pending or self._closed:
            return
        loop = self._loop
        if loop is not None and loop.is_closed():
            return
        self._pending = False
        values, unpins, invalid = self._values, self._unpins, self._invalid
        self._values, self._unpins, self._invalid = {}, set(), set()
        if self._scheduler.apply(self._revision, values, unpins, invalid):
            self._revisions += 1
        if self._waiters:
            for waiter in list(self._waiters):
                waiter.update(waiter.cell)

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
        self._cell(name)

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            loop = self._loop_for_subscribe(name)
            if not on_loop_thread(loop):
                # Subscribed from another thread: do the work on the loop's thread.
                inner = SingleAssignmentDisposable()

                def later() -> None:
                    try:
                        inner.disposable = subscribe(observer)
                    except Exception as exc:  # as reactivex's own subscribe would route it
                        observer.on_error(exc)

                loop.call_soon_threadsafe(later)
                return Disposable(lambda: call_on_loop(loop, inner.dispose))
            return self._subscribe(name, observer, loop)

        return Observable(subscribe)

    def _subscribe(
        self, name: str, observer: abc.ObserverBase[Any], loop: asyncio.AbstractEventLoop
    ) -> abc.DisposableBase:
        self._check_open()
        cell = self._cell(name)
        watcher = _Observer(observer, loop)
        cell.watchers.append(watcher)
        try:
            self._scheduler.demand(cell, self._pinned)  # may settle it, and so send the value
        except Exception:
            cell.watchers.remove(watcher)
            raise
        self._observers.add(watcher)
        if cell.settled:
            watcher.update(cell)

        def dispose() -> None:
            if not watcher.active:
                return
            watcher.active = False
            cell.watchers.remove(watcher)
            self._observers.discard(watcher)
            if not self._closed:
                self._scheduler.withdraw(cell)

        return Disposable(lambda: call_on_loop(loop, dispose))

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
        cell = self._cell(name)
        target = self._revision
        scheduler = self._scheduler
        scheduler.demand(cell, self._pinned)
        try:
            if scheduler.revision >= target and cell.settled:
                if cell.error is not None:
                    raise cell.error
                if cell.has_value:
                    return cell.value
            waiter = _Waiter(cell, loop.create_future(), scheduler, target)
            cell.watchers.append(waiter)
            self._waiters.add(waiter)
            try:
                return await waiter.future
            finally:
                self._waiters.discard(waiter)
                if waiter in cell.watchers:
                    cell.watchers.remove(waiter)
        finally:
            if not self._closed:
                scheduler.withdraw(cell)

    def _pinned(self, cell: Cell) -> bool:
        """Whether ``cell`` will be pinned once the pending revision is applied."""
        name = cell.name
        if name in self._values:
            return cell.provider is not None
        return cell.pinned and name not in self._unpins

    def _cell(self, name: str) -> Cell:
        cells = self._scheduler.cells
        cell = cells.get(name)
        if cell is not None:
            return cell
        if name in self._values or name in self._invalid:
            return self._scheduler.cell(name)
        raise UnknownTargetError(name, sorted(cells))

    # -- the loop -------------------------------------------------------------------------------

    def _prepare(self) -> asyncio.AbstractEventLoop | None:
        """The loop to hand a change to: the bound one, or the caller's running loop."""
        loop = self._loop
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
        loop = self._loop
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
        old = self._loop
        if old is loop:
            return
        if old is not None and not old.is_closed() and old.is_running():
            raise StoreInUseError(self.id)
        self._loop = loop
        self._scheduler.adopt(loop)
        if self._pending:
            loop.call_soon(self._flush)
        loop.call_soon(self._scheduler.drain)

    def _check_open(self) -> None:
        if self._closed:
            raise LiveStoreClosedError(self.id)

    # -- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store: cancel running steps, complete every ``observe`` stream and
        `errors`, and fail waiting ``get``s with `LiveStoreClosedError`. Closing twice is
        harmless. ``await aclose()`` also waits until the cancelled steps have finished."""
        self._tasks = run_on_loop(self._loop, self._close)

    async def aclose(self) -> None:
        """Close the store (see `close`) and wait until its cancelled steps have finished."""
        self.close()
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks)

    def _close(self) -> list[asyncio.Task[None]]:
        if self._closed:
            return []
        self._closed = True
        tasks = self._scheduler.close()
        self._values, self._unpins, self._invalid = {}, set(), set()
        error = LiveStoreClosedError(self.id)
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        observers, self._observers = self._observers, set()
        for watcher in observers:
            watcher.active = False
            guarded(watcher.loop, watcher.observer.on_completed)
        for cell in self._scheduler.cells.values():
            cell.watchers.clear()
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
