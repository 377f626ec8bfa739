"""observe / feed / compute: the bridges between a store and other Rx streams."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from ._activation import activate, failure_chain, release
from ._join import Join
from ._store import Store, is_present
from ._threads import call_on_loop, guarded, on_loop_thread
from .exceptions import PipelineError

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._step import Step

__all__ = ["check_name", "compute", "feed", "observe"]

logger = logging.getLogger("pipeliner_rx")


def _loop_for(store: Store, what: str) -> asyncio.AbstractEventLoop:
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


def observe(pipeline: Pipeline, store: Store, name: str) -> Observable[Any]:
    """An Observable of resource ``name`` of ``store``; see `Pipeline.observe`."""
    check_name(name)

    def subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = _loop_for(store, f"observe({name!r})")
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
        # The observer is the user's: what it raises must not stop the pipeline's own
        # notifications, so it goes to the loop's exception handler instead.
        if is_present(subject):
            guarded(loop, observer.on_next, subject.value)
            guarded(loop, observer.on_completed)
            return Disposable()
        demands = activate(store, pipeline._providers, names=(name,), strict=False)

        def ready(values: list[Any]) -> None:
            release(demands)
            guarded(loop, observer.on_next, values[0])
            guarded(loop, observer.on_completed)

        def failed(error: Exception, index: int) -> None:
            release(demands)  # failed elsewhere perhaps: providers nobody needs are cancelled
            failure = demands[0].failure if demands else None
            if failure is not None and failure.error is error:
                failure.reached(f"`{name}`", failure_chain(demands[0]))
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
            store.fail(name, error)

    def completed() -> None:
        if settle() and not store.present(name):
            store.fail(
                name,
                PipelineError(
                    f"The source fed to `{name}` completed without an item, so `{name}` has no "
                    f"value. Feed a source that emits one, or push `{name}` another way."
                ),
            )

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


def compute(
    pipeline: Pipeline,
    targets: Sequence[str | Step[Any]],
    max_concurrency: int | None,
) -> Callable[[Observable[Mapping[str, Any]]], Observable[Any]]:
    """An operator computing ``targets`` per item in a fresh scope; see `Pipeline.compute`."""
    if not targets:
        raise TypeError("`compute` needs at least one target: a resource name or a step.")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError("`max_concurrency` must be a whole number >= 1, or None for no limit.")
    single = len(targets) == 1

    async def run(item: Mapping[str, Any]) -> Any:
        async with pipeline.scope(**item) as scope:
            values = await asyncio.gather(*(scope._compute(target) for target in targets))
        return values[0] if single else tuple(values)

    def operator(source: Observable[Mapping[str, Any]]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            loop = asyncio.get_running_loop()
            pending: deque[asyncio.Task[Any]] = deque()  # started, in input order
            backlog: deque[Mapping[str, Any]] = deque()  # waiting for a free slot
            subscription = SingleAssignmentDisposable()
            source_done = False
            stopped = False

            def start(item: Mapping[str, Any]) -> None:
                task = loop.create_task(run(item))
                task.add_done_callback(lambda _: flush())
                pending.append(task)

            def on_item(item: Mapping[str, Any]) -> None:
                if stopped:
                    return
                if max_concurrency is None or len(pending) < max_concurrency:
                    start(item)
                else:
                    backlog.append(item)

            def flush() -> None:
                # Emit finished results in input order, then refill the free slots.
                nonlocal stopped
                while not stopped and pending and pending[0].done():
                    task = pending.popleft()
                    error = (
                        PipelineError("An item's computation was cancelled from outside.")
                        if task.cancelled()
                        else task.exception()
                    )
                    if error is not None:
                        stop()
                        guarded(
                            loop,
                            observer.on_error,
                            error if isinstance(error, Exception) else PipelineError(repr(error)),
                        )
                        return
                    guarded(loop, observer.on_next, task.result())
                    while backlog and (max_concurrency is None or len(pending) < max_concurrency):
                        start(backlog.popleft())
                if not stopped and source_done and not pending and not backlog:
                    stopped = True
                    guarded(loop, observer.on_completed)

            def on_source_error(error: Exception) -> None:
                if not stopped:
                    stop()
                    guarded(loop, observer.on_error, error)

            def on_source_completed() -> None:
                nonlocal source_done
                source_done = True
                flush()

            def stop() -> None:
                nonlocal stopped
                stopped = True
                subscription.dispose()
                backlog.clear()
                while pending:
                    pending.popleft().cancel()

            subscription.disposable = source.subscribe(
                lambda item: call_on_loop(loop, on_item, item),
                lambda error: call_on_loop(loop, on_source_error, error),
                lambda: call_on_loop(loop, on_source_completed),
            )
            return Disposable(lambda: call_on_loop(loop, stop))

        return Observable(subscribe)

    return operator
