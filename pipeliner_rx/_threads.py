"""Hand work to the event loop's thread, where every store change happens."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from .exceptions import PipelineError

__all__ = ["call_on_loop", "guarded", "on_loop_thread", "run_on_loop", "subscribe_on_loop"]

T = TypeVar("T")

logger = logging.getLogger("pipeliner_rx")


def on_loop_thread(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether the caller may touch state owned by ``loop`` directly.

    True on the loop's own thread, and when no loop is running it (before ``asyncio.run``,
    after it, or no loop at all): then nobody else can be touching it either.
    """
    if loop is None or not loop.is_running():
        return True
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def call_on_loop(
    loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any
) -> None:
    """Call ``fn(*args)`` now if on ``loop``'s thread, else schedule it there (fire and forget)."""
    if loop is None or on_loop_thread(loop):
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


def run_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on ``loop``'s thread and return its result (or raise its error) here.

    From another thread this blocks until the loop has run it, so the caller sees the same
    result and the same exceptions as on the loop's thread.
    """
    if loop is None or on_loop_thread(loop):
        return fn()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def apply() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed back to the calling thread as is
            done.set_exception(exc)

    loop.call_soon_threadsafe(apply)
    while True:
        try:
            return done.result(timeout=0.5)
        except TimeoutError:
            # Still queued: fine while the loop runs; if it stopped, it never will be applied.
            if not loop.is_running() and not done.done():
                raise PipelineError(
                    "The event loop stopped before the pushed values could be set; push "
                    "them again while the loop runs."
                ) from None


def subscribe_on_loop(
    loop: asyncio.AbstractEventLoop,
    subscribe: Callable[[], abc.DisposableBase],
    observer: abc.ObserverBase[Any],
) -> abc.DisposableBase:
    """Subscribe on ``loop``'s thread, for a subscription made on another thread.

    ``subscribe()`` runs there; what it raises goes to ``observer.on_error``, as reactivex's
    own subscribe would route it. Disposing the result disposes the subscription there.
    """
    inner = SingleAssignmentDisposable()

    def later() -> None:
        try:
            inner.disposable = subscribe()
        except Exception as exc:
            observer.on_error(exc)

    loop.call_soon_threadsafe(later)
    return Disposable(lambda: call_on_loop(loop, inner.dispose))


def guarded(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """Call a user's callback; what it raises goes to the loop's exception handler, not to us."""
    try:
        fn(*args)
    except Exception as exc:
        context = {"message": f"Error in a pipeliner_rx subscriber ({fn!r})", "exception": exc}
        if loop is not None and not loop.is_closed():
            loop.call_exception_handler(context)
        else:
            logger.error(context["message"], exc_info=exc)
