"""observe / feed: the bridges between a store's resources and other Rx streams."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from ._activation import activate, release
from ._join import Join
from ._store import Store, is_present
from ._threads import call_on_loop, guarded, on_loop_thread
from .exceptions import PipelineError

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["feed", "loop_for", "observe"]

logger = logging.getLogger("pipeliner_rx")


def loop_for(store: Store, what: str) -> asyncio.AbstractEventLoop:
    """The running loop, else the loop ``store`` is bound to; `PipelineError` if neither."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if store.loop is not None and not store.loop.is_closed():
            return store.loop
    raise PipelineError(
        f"{what} needs an asyncio event loop: subscribe inside a coroutine (or after the "
        f"pipeline has been used on a running loop)."
    )


def observe(pipeline: Pipeline, store: Store, name: str) -> Observable[Any]:
    """An Observable of resource ``name`` of ``store``; see `Pipeline.observe`."""

    def subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = loop_for(store, f"observe({name!r})")
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
        store.bind(loop)
        subject = store.subject(name)
        if is_present(subject):
            observer.on_next(subject.value)
            observer.on_completed()
            return Disposable()
        demands = activate(store, pipeline._providers, names=(name,), strict=False)

        # The observer is the user's: what it raises must not stop the pipeline's own
        # notifications, so it goes to the loop's exception handler instead.
        def ready(values: list[Any]) -> None:
            release(demands)
            guarded(loop, observer.on_next, values[0])
            guarded(loop, observer.on_completed)

        def failed(error: Exception, index: int) -> None:
            guarded(loop, observer.on_error, error)

        join = Join([subject], ready, failed)

        def dispose() -> None:
            if not join.done:
                join.dispose()
                release(demands)

        return Disposable(lambda: call_on_loop(loop, dispose))

    return Observable(subscribe)


def feed(store: Store, name: str, source: Observable[Any]) -> abc.DisposableBase:
    """Make the first item of ``source`` resource ``name``; see `Pipeline.feed`."""
    try:
        store.bind(asyncio.get_running_loop())
    except RuntimeError:
        pass  # no loop yet: items are handed to whichever loop the store is bound to then
    subscription = SingleAssignmentDisposable()
    taken = False

    def take(value: Any) -> None:
        nonlocal taken
        if taken:
            return
        taken = True
        subscription.dispose()
        store.feeds.discard(subscription)
        try:
            store.push({name: value})
        except PipelineError as exc:
            logger.warning("feed(%r) dropped an item: %s", name, exc)

    def fail(error: Exception) -> None:
        nonlocal taken
        if taken:
            return
        taken = True
        store.feeds.discard(subscription)
        store.fail(name, error)

    # Leaving the scope (or resetting the store) disposes what has not arrived yet.
    store.feeds.add(subscription)
    # The loop is looked up per item: the store may be bound only after `feed` was called.
    subscription.disposable = source.subscribe(
        lambda value: call_on_loop(store.loop, take, value),
        lambda error: call_on_loop(store.loop, fail, error),
    )
    return subscription
