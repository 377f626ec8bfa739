"""The readers of a live store: ``observe`` subscriptions and waiting ``get``s.

Each reader is a watcher of one cell, told whenever the cell settles, and a demand on it while
it lasts: the `Scheduler` runs what the cell needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from reactivex import abc
from reactivex.disposable import Disposable

from ._cells import Cell
from ._revisions import Scheduler
from ._threads import call_on_loop, guarded
from .exceptions import LiveStoreClosedError

__all__ = ["Readers"]


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


class Readers:
    """The ``observe`` subscriptions and waiting ``get``s of one live store."""

    __slots__ = ("observers", "scheduler", "waiters")

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.observers: set[_Observer] = set()
        self.waiters: set[_Waiter] = set()

    def subscribe(
        self,
        cell: Cell,
        observer: abc.ObserverBase[Any],
        loop: asyncio.AbstractEventLoop,
        pinned: Callable[[Cell], bool],
    ) -> abc.DisposableBase:
        """Send ``observer`` each new settled value of ``cell``, on ``loop``, until disposed.

        ``pinned`` is passed on to `Scheduler.demand`.
        """
        scheduler = self.scheduler
        watcher = _Observer(observer, loop)
        cell.watchers.append(watcher)
        try:
            scheduler.demand(cell, pinned)  # may settle it, and so send the value
        except Exception:
            cell.watchers.remove(watcher)
            raise
        self.observers.add(watcher)
        if cell.settled:
            watcher.update(cell)

        def dispose() -> None:
            if not watcher.active:
                return
            watcher.active = False
            cell.watchers.remove(watcher)
            self.observers.discard(watcher)
            scheduler.withdraw(cell)

        return Disposable(lambda: call_on_loop(loop, dispose))

    async def get(
        self,
        cell: Cell,
        loop: asyncio.AbstractEventLoop,
        target: int,
        pinned: Callable[[Cell], bool],
    ) -> Any:
        """The value of ``cell`` once it has settled in revision ``target`` (or a later one).

        ``pinned`` is passed on to `Scheduler.demand`.
        """
        scheduler = self.scheduler
        scheduler.demand(cell, pinned)
        try:
            if scheduler.revision >= target and cell.settled:
                if cell.error is not None:
                    raise cell.error
                if cell.has_value:
                    return cell.value
            waiter = _Waiter(cell, loop.create_future(), scheduler, target)
            cell.watchers.append(waiter)
            self.waiters.add(waiter)
            try:
                return await waiter.future
            finally:
                self.waiters.discard(waiter)
                if waiter in cell.watchers:
                    cell.watchers.remove(waiter)
        finally:
            scheduler.withdraw(cell)

    def applied(self) -> None:
        """A revision was applied: resolve the waiting ``get``s whose cells have settled."""
        if self.waiters:
            for waiter in list(self.waiters):
                waiter.update(waiter.cell)

    def close(self, store_id: int) -> None:
        """Fail the waiting ``get``s and complete the ``observe`` streams: the store closed."""
        error = LiveStoreClosedError(store_id)
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        observers, self.observers = self.observers, set()
        for watcher in observers:
            watcher.active = False
            guarded(watcher.loop, watcher.observer.on_completed)
        for cell in self.scheduler.cells.values():
            cell.watchers.clear()
