"""Activation: one demanded step in one store, from subscription to its inputs to its outputs.

The data path: a demand (`_demand.activate`) creates an `Activation` per provider that must
run, and each activation observes its input subjects itself (a count of those still due, no
operator chain). When every input holds a value, the step runs as a task on the store's loop and
completes its output subjects, which in turn count down their dependents. Demand is
reference-counted: when nobody needs a pending activation any more it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _starts
from ._attempt import announce_end, announce_start
from ._attempt import attempt as run_attempt
from ._events import StepEvent
from ._failure import Failure, stop_iteration_error
from ._inputs import Inputs
from ._store import (
    Resource,
    Store,
    complete_all,
    fail_subject,
    is_present,
    notify_settled,
    settle_all,
)
from .exceptions import PipelineError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Activation", "current_activation", "fail_downstream", "release"]

logger = logging.getLogger("pipeliner_rx")

# The activation whose step is running in the current task: a demand made from inside a step
# that comes back to that same step would wait on itself.
current_activation: contextvars.ContextVar[Activation | None] = contextvars.ContextVar(
    "pipeliner_rx_running", default=None
)


class Activation(Inputs):
    """A step demanded in a store: waiting for inputs, running, or finished.

    It observes its input subjects itself (`Inputs`); once every input holds a value, its
    step runs in a task of its own.
    """

    __slots__ = (
        "cause",
        "context",
        "demand",
        "failure",
        "finished",
        "inputs",
        "outputs",
        "private",
        "step",
        "store",
        "task",
        "unprovided",
        "upstream",
    )

    def __init__(
        self, step: Step[Any], store: Store, private: bool, context: contextvars.Context
    ) -> None:
        self.step = step
        self.store = store
        # A step that provides nothing, run for its caller: its result goes to a private subject.
        self.private = private
        # The context of the demand that activated the step: its task starts from a copy, not
        # from whichever task happened to complete its last input.
        self.context = context
        # Empty tuples, not lists, until needed: fewer objects for the cyclic GC to track
        # while thousands of activations are pending (W3).
        self.outputs: Sequence[Resource] = ()
        self.inputs: Sequence[str] = ()
        self.upstream: Sequence[Activation] = ()
        # Inputs nothing provides, awaited until someone pushes them (lenient demand only).
        self.unprovided: list[str] | None = None
        self.demand = 0
        Inputs.__init__(self)
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.cause: tuple[str, Activation] | None = None  # the failed input that stopped it
        self.failure: Failure | None = None  # set when it failed, for the failure's note

    def start(self) -> None:
        """Subscribe to the inputs; the step runs once all of them hold a value."""
        store = self.store
        if self.private:
            self.outputs = [Resource()]
            store.private.add(self)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("activate %s", self.step.label)
        # The plan chose the inputs: a defaulted parameter only when provided or present.
        inputs = self.inputs
        if not inputs:
            self._ready()
            return
        subjects = store.subjects
        sources = []
        waiting = []
        for name in inputs:
            subject = subjects.get(name)
            if subject is None:
                subject = subjects[name] = Resource()
                waiting.append(subject)
            elif not (subject.is_stopped and subject.has_value):
                waiting.append(subject)
            sources.append(subject)
        self.sources = sources
        if waiting:
            self._listen(waiting)
        else:
            self._ready()  # nothing to wait for

    def _subjects(self) -> Sequence[Resource]:
        # Looked up when needed, not kept: a failed resource gets a fresh subject meanwhile.
        if self.private:
            return self.outputs
        provides = self.step.provides
        if len(provides) == 1:
            return [self.store.subject(provides[0])]
        return [self.store.subject(name) for name in provides]

    def _ready(self) -> None:
        """Every input holds a value (in `sources`): start the step's task."""
        sources, self.sources = self.sources, ()
        if self.finished:
            return  # cancelled meanwhile
        upstream = self.upstream
        if upstream:
            # Inputs that were pushed instead of computed leave their providers unneeded.
            self.upstream = ()
            release(upstream)
        step = self.step
        store = self.store
        if not self.private and store.all_present(step.provides):
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("skip %s: its outputs are present", step.label)
            self._retire()
            events = step.engine.events
            if events.observers:
                events.emit(StepEvent(step.label, "skipped", scope=store.id))
            return
        kwargs = {}
        for name, source in zip(self.inputs, sources, strict=True):  # no comprehension: no frame
            kwargs[name] = source.value
        if step.has_defaults:
            # Inputs are read when the step starts: a value pushed since the demand beats the
            # parameter's default.
            subjects = store.subjects
            for p in step.params:
                if p.has_default and p.name not in kwargs:
                    subject = subjects.get(p.name)
                    present = subject is not None and is_present(subject)
                    kwargs[p.name] = subject.value if present else p.default  # type: ignore[union-attr]
        loop = store.loop
        assert loop is not None  # a store is bound before anything is activated
        # The step's task runs in its store's scope, in a copy of its demand's context.
        context = self.context.copy()
        scope_var = step.engine.scope_var
        scope = store if store.id else None
        if context.get(scope_var) is not scope:
            context.run(scope_var.set, scope)
        if not _starts.EAGER_START and loop.get_task_factory() is None:
            task = loop.create_task(self._run(kwargs), context=context)
            if not task.done():
                self.task = task
        else:
            # A task factory may start tasks eagerly (`asyncio.eager_task_factory`): the
            # step's first part then runs inside `create_task`. Starts are queued while
            # another start or a demand's walk is under way, so that nothing runs before the
            # walk has subscribed everything, and a chain of steps that never suspend starts
            # one after the other instead of one inside the other.
            _starts.start(loop, self, kwargs, context)

    def launch(
        self, loop: asyncio.AbstractEventLoop, kwargs: dict[str, Any], context: contextvars.Context
    ) -> None:
        """Create the step's task (a queued start, `_starts`), unless cancelled meanwhile."""
        if self.finished:
            return  # cancelled while its start was queued
        if _starts.EAGER_START and loop.get_task_factory() is None:
            task = asyncio.Task(  # type: ignore[call-arg]  # 3.12+, checked above
                self._run(kwargs), loop=loop, context=context, eager_start=True
            )
        else:
            task = loop.create_task(self._run(kwargs), context=context)
        if not task.done():  # an eager task may have run to its end already
            self.task = task

    async def _run(self, kwargs: dict[str, Any]) -> None:
        current_activation.set(self)  # in this task's own context
        if self.task is None:
            # Started eagerly: its first part runs before `create_task` returns, and whatever
            # it does may cancel this very step, so the task is known from the first line on.
            self.task = asyncio.current_task()
        step = self.step
        attempt = 0
        start = 0.0
        # Every way this task can end answers the step's waiters: the value, the step's
        # error, a cancellation, or whatever else escaped (a BaseException from the step, an
        # error reading its result). This is the one place that guarantees it.
        try:
            while True:
                attempt += 1
                start = announce_start(step, self.store.id, attempt)
                try:
                    if step.is_coroutine_function and step.timeout is None:
                        result = await step.fn(**kwargs)  # one coroutine less in the common case
                    else:
                        result = await run_attempt(step, kwargs, step.engine.executor)
                except Exception as exc:
                    if attempt <= step.retries:
                        announce_end(self.step, "failed", self.store.id, start, attempt, exc)
                        if step.retry_delay:
                            await asyncio.sleep(step.retry_delay)
                        continue
                    self._give_up(exc, start, attempt)
                    return
                self._emit(result, start, attempt)
                return
        except asyncio.CancelledError:
            self._cancelled(start, attempt)
            raise
        except BaseException as exc:
            self._give_up(exc, start, attempt)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # these stop the loop, as asyncio lets them
        finally:
            del kwargs  # the task may outlive the run (a done-callback, a traceback)
            # The task's context holds this activation (`current_activation`): letting go of
            # the task leaves no cycle for the garbage collector.
            self.task = None

    def _give_up(self, exc: BaseException, start: float, attempt: int) -> None:
        """The step failed for good: note it on the error, fail its outputs, then tell."""
        if self.finished:
            return  # cancelled meanwhile: nobody waits for this run any more
        if isinstance(exc, StopIteration):  # a Future refuses it; asyncio would hang on it
            exc = stop_iteration_error(self.step, exc)
        self.failure = Failure(exc, self.step, attempt)
        self._fail(exc)
        announce_end(self.step, "failed", self.store.id, start, attempt, exc)

    def _cancelled(self, start: float, attempt: int) -> None:
        step = self.step
        if not self.finished:
            # Not cancelled by the library (which retires an activation before cancelling it):
            # the step raised CancelledError itself, or someone cancelled its task. Whoever
            # waits on it must hear of it rather than wait forever.
            self._fail(
                PipelineError(
                    f"`{step.name}` was cancelled from outside pipeliner_rx (it raised "
                    f"CancelledError, or its task was cancelled), so its outputs are missing. "
                    f"Demand them again to rerun it."
                )
            )
        announce_end(step, "cancelled", self.store.id, start, attempt)

    def _emit(self, result: Any, start: float, attempt: int) -> None:
        if self.finished:
            return  # cancelled, but the step swallowed the cancellation and returned
        step = self.step
        provides = step.provides
        if len(provides) > 1:
            values: Sequence[Any] = tuple(result) if isinstance(result, (tuple, list)) else ()
            if len(values) != len(provides):
                self._give_up(StepOutputError(step.name, provides, result), start, attempt)
                return
        else:
            values = (result,)
        self._retire()
        if not start:  # nobody watches: the common case, in one step
            complete_all(self._subjects(), values)
            return
        if logger.isEnabledFor(logging.DEBUG):  # before dependents (may) run
            logger.debug("finish %s", step.label)
        # Every output is held before anyone hears of one (an emission is atomic); the
        # `succeeded` event comes then, before dependents hear (and, eagerly, start).
        settled = settle_all(self._subjects(), values)
        events = step.engine.events
        if events.observers:
            elapsed = time.perf_counter() - start
            events.emit(StepEvent(step.label, "succeeded", elapsed, None, self.store.id, attempt))
        notify_settled(settled)

    def _lost(self, error: Exception) -> None:
        """An input failed: this step cannot run, and fails its outputs with the same error.

        Failures usually retire their dependents before anyone hears of them
        (`fail_downstream`); this is for inputs failed otherwise (a feed's error).
        """
        self._stop_listening()
        if not self.finished:
            fail_downstream(self._detach(), error, self)

    def _detach(self) -> list[tuple[str, Resource]]:
        """Retire, stop listening, release upstream, and take the outputs out of the store."""
        self._retire()
        self._stop_listening()
        if self.private:
            old = [("", subject) for subject in self.outputs]
        else:
            old = self.store.detach(self.step.provides)
        upstream, self.upstream = self.upstream, ()
        release(upstream)
        return old

    def _fail(self, error: BaseException) -> None:
        if not self.finished:
            fail_downstream(self._detach(), error, self)

    def _retire(self) -> None:
        self.finished = True
        if self.private:
            self.store.private.discard(self)
            return
        active = self.store.active
        if active.get(self.step) is self:
            del active[self.step]

    def cancel(self, error: Exception | None = None) -> None:
        """Stop waiting or running; the outputs stay missing.

        ``error`` goes to whoever awaits a step that provides nothing (its caller), when the
        caller is not the one going away.
        """
        if self.finished:
            return
        self._retire()
        if self.private and error is not None:
            fail_subject(self.outputs[0], error)
        self._stop_listening()
        task = self.task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()
            stopping = self.store.stopping
            stopping.add(task)
            task.add_done_callback(stopping.discard)


def fail_downstream(
    outputs: list[tuple[str, Resource]], error: BaseException, source: Activation | None
) -> None:
    """Fail ``outputs`` (of ``source``) and everything downstream that waits on them.

    First every dependent, transitively, is retired and its outputs taken out of the store;
    only then does anyone hear of the error. So a demand made by a waiter as soon as it hears
    (in its ``except`` block, in an observer) finds no stale activation and runs the providers
    again: errors are not cached, without a window. Iterative: depth costs no recursion.
    """
    failed: list[Resource] = []
    work: deque[tuple[str, Resource, Activation | None]] = deque(
        (name, subject, source) for name, subject in outputs
    )
    while work:
        name, subject, upstream = work.popleft()
        failed.append(subject)
        for observer in list(subject.observers):
            if not isinstance(observer, Activation) or observer.finished:
                continue
            dependent = observer
            if upstream is not None:
                dependent.cause = (name, upstream)
                if upstream.failure is not None and upstream.failure.error is error:
                    dependent.failure = upstream.failure
            work.extend((n, s, dependent) for n, s in dependent._detach())
    for subject in failed:
        fail_subject(subject, error)


def release(activations: Sequence[Activation]) -> None:
    """Withdraw one demand from each activation, cancelling those nobody needs any more."""
    work = list(activations)
    while work:
        activation = work.pop()
        activation.demand -= 1
        if activation.demand <= 0 and not activation.finished:
            activation.cancel()
            work.extend(activation.upstream)
            activation.upstream = ()
