"""compute: an Rx operator running each item of a stream through the pipeline."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from ._items import Items, Targets, check_limit
from ._rx import loop_for
from ._threads import call_on_loop, guarded, on_loop_thread, subscribe_on_loop

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._step import Step
    from ._store import Store

__all__ = ["compute"]


def compute(
    pipeline: Pipeline,
    store: Store,
    targets: Sequence[str | Step[Any]],
    max_concurrency: int | None,
    ordered: bool,
    return_exceptions: bool,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """An operator computing ``targets`` per item in a fresh scope; see `Pipeline.compute`."""
    limit = check_limit(max_concurrency)
    resolved = Targets(pipeline, targets, store, "compute")
    try:
        # Subscriptions made later on other threads (flat_map over a source on a worker
        # thread) hand their work to the loop the operator was made on.
        made_on: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        made_on = None

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if made_on is not None and not made_on.is_closed():
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = made_on
            else:
                loop = loop_for(store, "compute(...)")
            context = contextvars.copy_context()
            if on_loop_thread(loop):
                return _Stream(resolved, loop, context, limit, ordered, return_exceptions).run(
                    source, observer
                )
            # Subscribed from another thread: subscribe on the loop's thread.
            return subscribe_on_loop(
                loop,
                lambda: _Stream(resolved, loop, context, limit, ordered, return_exceptions).run(
                    source, observer
                ),
                observer,
            )

        return Observable(subscribe)

    return operator


class _Stream:
    """One subscription of the operator; lives on the loop's thread, where items are handed."""

    def __init__(
        self,
        targets: Targets,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
        limit: int | None,
        ordered: bool,
        return_exceptions: bool,
    ) -> None:
        self.loop = loop
        self.items = Items(targets, loop, ordered, context, self.flush)
        self.limit = limit
        self.return_exceptions = return_exceptions
        self.backlog: deque[Mapping[str, Any]] = deque()  # waiting for a free slot
        self.subscription = SingleAssignmentDisposable()
        self.observer: abc.ObserverBase[Any] | None = None
        self.source_done = False
        self.stopped = False

    def run(self, source: Observable[Any], observer: abc.ObserverBase[Any]) -> abc.DisposableBase:
        self.observer = observer
        loop = self.loop
        self.subscription.disposable = source.subscribe(
            lambda item: call_on_loop(loop, self.on_item, item),
            lambda error: call_on_loop(loop, self.on_source_error, error),
            lambda: call_on_loop(loop, self.on_source_completed),
        )
        return Disposable(lambda: call_on_loop(loop, self.stop))

    def has_room(self) -> bool:
        return self.limit is None or self.items.in_flight < self.limit

    def on_item(self, item: Mapping[str, Any]) -> None:
        if self.stopped:
            return
        if self.has_room():
            self.items.start(item)
        else:
            self.backlog.append(item)

    def flush(self) -> None:
        """Emit what may be emitted now, then refill the free slots from the backlog."""
        observer = self.observer
        assert observer is not None
        items = self.items
        while not self.stopped:
            outcome = items.take()
            if outcome is None:
                break
            if outcome.error is not None:
                if not self.return_exceptions:
                    self.stop()
                    # The observer is the user's: what it raises goes to the loop's handler.
                    guarded(self.loop, observer.on_error, outcome.error)
                    return
                guarded(self.loop, observer.on_next, outcome.error)
            else:
                guarded(self.loop, observer.on_next, outcome.value)
            while self.backlog and not self.stopped and self.has_room():
                items.start(self.backlog.popleft())
        if self.stopped or not self.source_done or items.in_flight or self.backlog:
            return
        self.stopped = True
        guarded(self.loop, observer.on_completed)

    def on_source_error(self, error: Exception) -> None:
        if not self.stopped:
            self.stop()
            assert self.observer is not None
            guarded(self.loop, self.observer.on_error, error)

    def on_source_completed(self) -> None:
        self.source_done = True
        self.flush()

    def stop(self) -> None:
        self.stopped = True
        self.subscription.dispose()
        self.backlog.clear()
        self.items.close()
