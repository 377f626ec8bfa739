"""One attempt of a step: its timeout, an async callable awaited, a plain function on its executor.

`attempt` is shared by the one-shot engine (`_activation`) and live stores (`_liverun`); retries
and outcomes are theirs. The one-shot engine announces its attempts with `announce_start` and
`announce_end` (the debug log and the pipeline's events).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from ._events import EventKind, StepEvent
from ._executors import Executor, run_sync

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["announce_end", "announce_start", "attempt"]

logger = logging.getLogger("pipeliner_rx")


async def attempt(step: Step[Any], kwargs: dict[str, Any], executor: Executor) -> Any:
    """Run ``step`` once with ``kwargs``, within its timeout; ``executor`` if it names none."""
    if step.timeout is None:
        return await _invoke(step, kwargs, executor)
    try:
        async with asyncio.timeout(step.timeout) as deadline:
            return await _invoke(step, kwargs, executor)
    except TimeoutError:
        if deadline.expired():
            raise TimeoutError(
                f"`{step.name}` ran longer than its timeout of {step.timeout} s."
            ) from None
        raise


async def _invoke(step: Step[Any], kwargs: dict[str, Any], executor: Executor) -> Any:
    if step.is_async:
        result = step.fn(**kwargs)
        # An async callable that is not a coroutine function may hand back any awaitable
        # (or, exceptionally, the value itself).
        return await result if inspect.isawaitable(result) else result
    result = await run_sync(step, kwargs, step.executor if step.executor is not None else executor)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited, on purpose: no "never awaited" warning
        raise TypeError(
            f"`{step.name}` is a plain `def` step but returned an awaitable "
            f"({type(result).__name__}). Make it `async def` so its result is awaited, "
            f"or return the value itself."
        )
    return result


def announce_start(step: Step[Any], scope: int, attempt: int) -> float:
    """Log and announce an attempt; its start time, or 0.0 when nobody watches."""
    events = step.engine.events
    debug = logger.isEnabledFor(logging.DEBUG)
    if not debug and not events.observers:
        return 0.0  # the common case costs two checks, not a clock reading
    if debug:
        logger.debug("start %s", step.label)
    if events.observers:
        events.emit(StepEvent(step.label, "started", scope=scope, attempt=attempt))
    return time.perf_counter()


def announce_end(
    step: Step[Any],
    kind: EventKind,
    scope: int,
    start: float,
    attempt: int,
    error: BaseException | None = None,
) -> None:
    """Log and announce an attempt that failed or was cancelled."""
    if logger.isEnabledFor(logging.DEBUG):
        if error is None:
            logger.debug("%s %s", kind, step.label)
        else:
            logger.debug("%s %s (attempt %d): %r", kind, step.label, attempt, error)
    events = step.engine.events
    if events.observers:
        elapsed = time.perf_counter() - start if start else None
        events.emit(StepEvent(step.label, kind, elapsed, error, scope, attempt))
