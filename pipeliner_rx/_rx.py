"""observe / feed: the bridges between a store's resources and other Rx streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from ._activation import fail_downstream
from ._demand import Listener, activate
from ._store import Store, is_present
from ._threads import call_on_loop, guarded, on_loop_thread, subscribe_on_loop
from .exceptions import PipelineError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["check_name", "feed", "loop_for", "observe"]

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


def check_name(name: object) -> None:
    """Raise `TypeError` unless ``name`` is a resource name (a non-empty string)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"A resource name is a non-empty string; got {name!r}.")


def observe(engine: Engine, store: Store, name: str) -> Observable[Any]:
    """An Observable of resource ``name`` of ``store``; see `Pipeline.observe`."""
    check_name(name)

    def subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = loop_for(store, f"observe({name!r})")
        if not on_loop_thread(loop):
            # Subscribed from another thread: do the work on the loop's thread.
            return subscribe_on_loop(loop, lambda: subscribe(observer), observer)
        store.bind(loop)
        subject = store.subject(name)
        # The observer is the user's: what it raises must not stop the pipeline's own
        # notifications, so it goes to the loop's exception handler instead.
        if is_present(subject):
            guarded(loop, observer.on_next, subject.value)
            guarded(loop, observer.on_completed)
            return Disposable()
        demands = activate(engine, store, names=(name,), strict=False)
        ended: asyncio.Future[None] | None = None

        def end() -> None:
            if ended is not None and not ended.done():
                ended.set_result(None)

        made: list[Listener] = []  # it may hear while being made (a step that ran eagerly)

        def ready(values: list[Any]) -> None:
            end()
            if made:
                made[0].withdraw()
            guarded(loop, observer.on_next, values[0])
            guarded(loop, observer.on_completed)

        def failed(error: BaseException) -> None:
            end()
            guarded(loop, observer.on_error, error)

        listener = Listener(demands, [subject], f"`{name}`", ready, failed)
        made.append(listener)
        if listener.done:
            listener.withdraw()

        def dispose() -> None:
            end()
            if not listener.done:
                listener.withdraw()

        if not listener.done:
            # A loop that finishes cancels its tasks: this one tells the observer, which
            # would otherwise never hear anything.
            ended = loop.create_future()
            task = loop.create_task(_until_loop_ends(ended, listener, failed, name))
            _watchers.add(task)
            task.add_done_callback(_watchers.discard)
        return Disposable(lambda: call_on_loop(loop, dispose))

    return Observable(subscribe)


_watchers: set[asyncio.Task[None]] = set()  # referenced until done, as asyncio requires


async def _until_loop_ends(
    ended: asyncio.Future[None],
    listener: Listener,
    failed: Callable[[BaseException], None],
    name: str,
) -> None:
    """Wait for an observe subscription to end; if the loop's end cancels this, fail it."""
    try:
        await ended
    except asyncio.CancelledError:
        if not listener.done:
            listener.withdraw()
            failed(
                PipelineError(
                    f"The event loop finished while `{name}` was observed and before it had a "
                    f"value. Keep the loop running until the value arrives, or dispose the "
                    f"subscription."
                )
            )
        raise


def feed(store: Store, name: str, source: Observable[Any]) -> abc.DisposableBase:
    """Make the first item of ``source`` resource ``name``; see `Pipeline.feed`."""
    check_name(name)
    try:
        store.bind(asyncio.get_running_loop())
    except RuntimeError:
        pass  # no loop yet: items are handed to whichever loop the store is bound to then
    subscription = SingleAssignmentDisposable()
    taken = False

    def settle() -> bool:
        # The feed's entry goes however it ends: an item, an error, completion or disposal.
        nonlocal taken
        if taken:
            return False
        taken = True
        subscription.dispose()
        store.feeds.discard(handle)
        return True

    def take(value: Any) -> None:
        if settle():
            try:
                store.push({name: value})
            except PipelineError as exc:
                logger.warning("feed(%r) dropped an item: %s", name, exc)

    def fail(error: Exception) -> None:
        if settle():
            fail_downstream(store.detach((name,)), error, None)

    def completed() -> None:
        if settle() and not store.present(name):
            error = PipelineError(
                f"The source fed to `{name}` completed without an item, so `{name}` has no "
                f"value. Feed a source that emits one, or push `{name}` another way."
            )
            fail_downstream(store.detach((name,)), error, None)

    def dispose() -> None:
        call_on_loop(store.loop, settle)

    handle = Disposable(dispose)
    # Leaving the scope (or resetting the store) disposes what has not arrived yet.
    store.feeds.add(handle)
    # The loop is looked up per item: the store may be bound only after `feed` was called.
    subscription.disposable = source.subscribe(
        lambda value: call_on_loop(store.loop, take, value),
        lambda error: call_on_loop(store.loop, fail, error),
        lambda: call_on_loop(store.loop, completed),
    )
    return handle
