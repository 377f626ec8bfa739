"""Runs of a live store's steps: one task per run, attempts, timeouts, retries, events.

A run ends in an `Outcome` handed to the scheduler, which applies it (the step's events then
say ``succeeded`` or ``failed``) or drops it because an input changed meanwhile (``cancelled``):
the events report what became of the result, not only how the call ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._attempt import attempt as run_attempt
from ._cells import Outcome, Run
from ._events import EventKind, Events, StepEvent
from ._executors import Executor
from ._failure import stop_iteration_error
from .exceptions import PipelineError

if TYPE_CHECKING:
    pass

__all__ = ["Runner"]

logger = logging.getLogger("pipeliner_rx")


class Runner:
    """Starts the runs of one live store and reports their events.

    Args:
        events: the pipeline's event stream.
        errors: the store's own stream of ``failed`` events.
        executor: where plain ``def`` steps run unless a step names its own.
        store_id: the live store's id (``StepEvent.scope``).
        finish: called with the outcome of each run that was not cancelled.
    """

    def __init__(
        self,
        events: Events,
        errors: Events,
        executor: Executor,
        store_id: int,
        finish: Callable[[Outcome], None],
    ) -> None:
        self.events = events
        self.errors = errors
        self.executor = executor
        self.id = store_id
        self.finish = finish
        # Steps run in copies of the context the store was made in, not of whichever task or
        # callback happened to settle their inputs.
        self.context = contextvars.copy_context()

    def start(self, loop: asyncio.AbstractEventLoop, run: Run, kwargs: dict[str, Any]) -> None:
        """Run the step in a task of its own."""
        step = run.node.step
        if (
            step.is_coroutine_function
            and step.timeout is None
            and not step.retries
            and not self._watched()
        ):
            coroutine = self._plain(run, kwargs)
        else:
            coroutine = self._attempts(run, kwargs)
        run.task = loop.create_task(coroutine, context=self.context.copy())

    def _watched(self) -> bool:
        """Whether anyone listens to events or the debug log (else a run reads no clock)."""
        return bool(
            self.events.observers or self.errors.observers or logger.isEnabledFor(logging.DEBUG)
        )

    async def _plain(self, run: Run, kwargs: dict[str, Any]) -> None:
        """The common run, in one frame: a coroutine function, one attempt, nobody watching."""
        try:
            result = await run.node.step.fn(**kwargs)
        except asyncio.CancelledError:
            self._interrupted(run, 0.0, 1)
            raise
        except BaseException as exc:
            self._give_up(run, exc, 0.0, 1)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # these stop the loop, as asyncio lets them
            return
        self.finish(Outcome(run, result, None, None, 1))

    async def _attempts(self, run: Run, kwargs: dict[str, Any]) -> None:
        step = run.node.step
        attempt = 0
        start = 0.0
        try:
            while True:
                attempt += 1
                start = self._started(run, attempt)
                try:
                    if step.is_coroutine_function and step.timeout is None:
                        result = await step.fn(**kwargs)  # one coroutine less, as a rule
                    else:
                        result = await run_attempt(step, kwargs, self.executor)
                except Exception as exc:
                    if attempt <= step.retries:
                        self._report(run, "failed", _since(start), attempt, exc)
                        if step.retry_delay:
                            await asyncio.sleep(step.retry_delay)
                        continue
                    self._give_up(run, exc, start, attempt)
                    return
                self.finish(Outcome(run, result, None, _since(start), attempt))
                return
        except asyncio.CancelledError:
            self._interrupted(run, start, attempt)
            raise
        except BaseException as exc:  # a step's KeyboardInterrupt, SystemExit, ...
            self._give_up(run, exc, start, attempt)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # these stop the loop, as asyncio lets them

    def _give_up(self, run: Run, exc: BaseException, start: float, attempt: int) -> None:
        if isinstance(exc, StopIteration):  # a Future refuses it: `get` could never raise it
            exc = stop_iteration_error(run.node.step, exc)
        note = (
            f"Raised by step `{run.node.step.name}` in revision {run.revision} of live store "
            f"{self.id}" + (f", in each of {attempt} attempts." if attempt > 1 else ".")
        )
        try:
            if note not in getattr(exc, "__notes__", ()):
                exc.add_note(note)
        except Exception:  # an exception that refuses notes still fails the step, unnoted
            pass
        self.finish(Outcome(run, None, exc, _since(start), attempt))

    def _interrupted(self, run: Run, start: float, attempt: int) -> None:
        self._report(run, "cancelled", _since(start), attempt)
        if not run.cancelled:
            # Not cancelled by the store: the step raised CancelledError itself, or someone
            # cancelled its task. Whoever waits on its outputs must hear of it.
            name = run.node.step.name
            error = PipelineError(
                f"`{name}` was cancelled from outside pipeliner_rx (it raised CancelledError, "
                f"or its task was cancelled), so its outputs failed in revision "
                f"{run.revision}. Push a changed input or call `invalidate(...)` to rerun it."
            )
            self.finish(Outcome(run, None, error, None, attempt))

    # -- events ---------------------------------------------------------------------------------

    def _started(self, run: Run, attempt: int) -> float:
        """Log and announce an attempt; its start time, or 0.0 when nobody watches."""
        if not self._watched():
            return 0.0
        name = run.node.step.label
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("start %s (live store %d, revision %d)", name, self.id, run.revision)
        if self.events.observers:
            self.events.emit(StepEvent(name, "started", None, None, self.id, attempt, run.revision))
        return time.perf_counter()

    def ended(self, outcome: Outcome, kind: EventKind) -> None:
        """Report what became of a finished run: applied (``succeeded`` / ``failed``) or
        dropped (``cancelled``)."""
        error = outcome.error if kind == "failed" else None
        self._report(outcome.run, kind, outcome.elapsed, outcome.attempt, error)

    def _report(
        self,
        run: Run,
        kind: EventKind,
        elapsed: float | None,
        attempt: int,
        error: BaseException | None = None,
    ) -> None:
        events, errors = self.events, self.errors
        failed = kind == "failed"
        label = run.node.step.label
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s (revision %d)", kind, label, run.revision)
        if not events.observers and not (failed and errors.observers):
            return
        event = StepEvent(label, kind, elapsed, error, self.id, attempt, run.revision)
        if events.observers:
            events.emit(event)
        if failed and errors.observers:
            errors.emit(event)


def _since(start: float) -> float | None:
    return time.perf_counter() - start if start else None
