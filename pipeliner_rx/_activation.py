"""Activation: one demanded step in one store, from subscription to its inputs to its outputs.

The data path: a demand walks the missing part of the graph (iteratively, so depth is free),
creates an `Activation` per provider that must run, and each activation subscribes a `Join` to
its input subjects. When the join has every input, the step runs as a task on the store's loop
and completes its output subjects, which in turn complete the joins of its dependents. Demand is
reference-counted: when nobody needs a pending activation any more it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._events import StepEvent
from ._executors import run_sync
from ._join import Join
from ._store import Resource, Store, is_present
from .exceptions import CycleError, MissingResourceError, PipelineError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Activation", "activate", "failure_chain", "release"]

logger = logging.getLogger("pipeliner_rx")

# The activation whose step is running in the current task: a demand made from inside a step
# that comes back to that same step would wait on itself.
_running: contextvars.ContextVar[Activation | None] = contextvars.ContextVar(
    "pipeliner_rx_running", default=None
)


class Activation:
    """A step demanded in a store: waiting for inputs, running, or finished."""

    __slots__ = (
        "cause",
        "demand",
        "finished",
        "inputs",
        "join",
        "outputs",
        "private",
        "step",
        "store",
        "task",
        "unprovided",
        "upstream",
    )

    def __init__(self, step: Step[Any], store: Store, private: bool) -> None:
        self.step = step
        self.store = store
        # A step that provides nothing, run for its caller: its result goes to a private subject.
        self.private = private
        self.outputs: list[Resource] = []
        self.inputs: Sequence[str] = ()
        self.upstream: list[Activation] = []
        # Inputs nothing provides, awaited until someone pushes them (lenient demand only).
        self.unprovided: list[str] | None = None
        self.demand = 0
        self.join: Join | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.cause: tuple[str, Activation] | None = None

    def start(self) -> None:
        """Subscribe to the inputs; the step runs once all of them hold a value."""
        store = self.store
        if self.private:
            self.outputs = [Resource()]
            store.private.add(self)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("activate %s", self.step.name)
        step = self.step
        if step.has_defaults:
            providers = step.pipeline._providers
            self.inputs = [
                p.name
                for p in step.params
                if not p.has_default or p.name in providers or store.present(p.name)
            ]
        else:
            self.inputs = step.param_names
        subjects = [store.subject(name) for name in self.inputs]
        if all(is_present(subject) for subject in subjects):
            self._ready([subject.value for subject in subjects])  # nothing to wait for
        else:
            self.join = Join(subjects, self._ready, self._lost)

    def _subjects(self) -> list[Resource]:
        # Looked up when needed, not kept: a failed resource gets a fresh subject meanwhile.
        if self.private:
            return self.outputs
        return [self.store.subject(name) for name in self.step.provides]

    def _ready(self, values: list[Any]) -> None:
        self.join = None
        if self.finished:
            return  # cancelled meanwhile
        upstream = self.upstream
        if upstream:
            # Inputs that were pushed instead of computed leave their providers unneeded.
            self.upstream = []
            release(upstream)
        step = self.step
        store = self.store
        if not self.private and store.all_present(step.provides):
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("skip %s: its outputs are present", step.name)
            events = step.pipeline._events
            if events.observers:
                events.emit(StepEvent(step.name, "skipped", scope=store.id))
            self._retire()
            return
        if step.has_defaults:
            kwargs = {p.name: p.default for p in step.params if p.has_default}
            kwargs.update(zip(self.inputs, values, strict=True))
        else:
            kwargs = dict(zip(self.inputs, values, strict=True))
        loop = store.loop
        assert loop is not None  # a store is bound before anything is activated
        # The step's task runs in its store's scope, whoever completed its last input; a task
        # copies the current context anyway, so a context is made here only to change it.
        scope_var = step.pipeline._scope_var
        scope = store if store.id else None
        if scope_var.get() is scope:
            self.task = loop.create_task(self._run(kwargs))
        else:
            context = contextvars.copy_context()
            context.run(scope_var.set, scope)
            self.task = loop.create_task(self._run(kwargs), context=context)

    async def _run(self, kwargs: dict[str, Any]) -> None:
        _running.set(self)  # in this task's own context
        step = self.step
        attempt = 0
        while True:
            attempt += 1
            start = self._started(attempt)
            try:
                if step.is_async and step.timeout is None:
                    result = await step.fn(**kwargs)  # one coroutine less in the common case
                else:
                    result = await self._attempt(kwargs)
            except asyncio.CancelledError:
                self._cancelled(start, attempt)
                raise
            except Exception as exc:
                self._attempt_failed(exc, start, attempt)
                if attempt <= step.retries:
                    if step.retry_delay:
                        try:
                            await asyncio.sleep(step.retry_delay)
                        except asyncio.CancelledError:
                            self._cancelled(start, attempt)
                            raise
                    continue
                self._give_up(exc, attempt)
                return
            self._succeeded(result, start, attempt)
            return

    def _started(self, attempt: int) -> float:
        """Log and announce an attempt; its start time, or 0.0 when nobody watches."""
        step = self.step
        events = step.pipeline._events
        debug = logger.isEnabledFor(logging.DEBUG)
        if not debug and not events.observers:
            return 0.0  # the common case costs two checks, not a clock reading
        if debug:
            logger.debug("start %s", step.name)
        if events.observers:
            events.emit(StepEvent(step.name, "started", scope=self.store.id, attempt=attempt))
        return time.perf_counter()

    def _succeeded(self, result: Any, start: float, attempt: int) -> None:
        if start:  # someone watched it start
            step = self.step
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("finish %s", step.name)
            events = step.pipeline._events
            if events.observers:
                elapsed = time.perf_counter() - start
                events.emit(
                    StepEvent(step.name, "succeeded", elapsed, None, self.store.id, attempt)
                )
        self._emit(result)

    def _attempt_failed(self, exc: Exception, start: float, attempt: int) -> None:
        step = self.step
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("failed %s (attempt %d): %r", step.name, attempt, exc)
        events = step.pipeline._events
        if events.observers:
            elapsed = time.perf_counter() - start if start else None
            events.emit(StepEvent(step.name, "failed", elapsed, exc, self.store.id, attempt))

    def _give_up(self, exc: Exception, attempt: int) -> None:
        step = self.step
        names = ", ".join(f"`{name}`" for name in step.provides)
        tries = f" in each of {attempt} attempts" if attempt > 1 else ""
        exc.add_note(
            f"Raised by step `{step.name}`{tries}"
            + (f", which provides {names}." if names else ".")
        )
        self._fail(exc)

    def _cancelled(self, start: float, attempt: int) -> None:
        step = self.step
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("cancelled %s", step.name)
        events = step.pipeline._events
        if events.observers:
            elapsed = time.perf_counter() - start if start else None
            events.emit(StepEvent(step.name, "cancelled", elapsed, None, self.store.id, attempt))
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

    async def _attempt(self, kwargs: dict[str, Any]) -> Any:
        step = self.step
        if step.timeout is None:
            return await self._invoke(kwargs)
        try:
            async with asyncio.timeout(step.timeout) as deadline:
                return await self._invoke(kwargs)
        except TimeoutError:
            if deadline.expired():
                raise TimeoutError(
                    f"`{step.name}` ran longer than its timeout of {step.timeout} s."
                ) from None
            raise

    async def _invoke(self, kwargs: dict[str, Any]) -> Any:
        step = self.step
        if step.is_async:
            return await step.fn(**kwargs)
        executor = step.executor if step.executor is not None else step.pipeline.executor
        return await run_sync(step, kwargs, executor)

    def _emit(self, result: Any) -> None:
        if self.finished:
            return  # cancelled, but the step swallowed the cancellation and returned
        outputs = self._subjects()
        if len(outputs) == 1:
            values: Sequence[Any] = (result,)
        elif isinstance(result, (tuple, list)) and len(result) == len(outputs):
            values = result
        else:
            self._fail(StepOutputError(self.step.name, self.step.provides, result))
            return
        self._retire()
        for subject, value in zip(outputs, values, strict=True):
            subject.complete(value)

    def _lost(self, error: Exception, index: int) -> None:
        """An input failed: this step cannot run, and fails its outputs with the same error."""
        self.join = None
        name = self.inputs[index]
        for upstream in self.upstream:
            if name in upstream.step.provides:
                self.cause = (name, upstream)
                break
        loop = self.store.loop
        assert loop is not None
        # Deferred, so that a failure deep in a long chain does not recurse once per level.
        loop.call_soon(self._fail, error)

    def _fail(self, error: Exception) -> None:
        if self.finished:
            return
        self._retire()
        if self.private:
            self.outputs[0].on_error(error)
        else:
            for name in self.step.provides:
                self.store.fail(name, error)
        upstream, self.upstream = self.upstream, []
        release(upstream)

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
            self.outputs[0].on_error(error)
        if self.join is not None:
            self.join.dispose()
            self.join = None
        task = self.task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()


def release(activations: Sequence[Activation]) -> None:
    """Withdraw one demand from each activation, cancelling those nobody needs any more."""
    work = list(activations)
    while work:
        activation = work.pop()
        activation.demand -= 1
        if activation.demand <= 0 and not activation.finished:
            activation.cancel()
            work.extend(activation.upstream)
            activation.upstream = []


def failure_chain(activation: Activation) -> list[str]:
    """Data-flow chain from the step that raised to ``activation``: step, resource, step, ..."""
    chain = [activation.step.name]
    cause = activation.cause
    while cause is not None:
        name, upstream = cause
        chain += [name, upstream.step.name]
        cause = upstream.cause
    chain.reverse()
    return chain


class _Frame:
    __slots__ = ("deps", "index", "step", "unprovided", "via")

    def __init__(self, step: Step[Any], via: str | None) -> None:
        self.step = step
        self.via = via
        self.index = 0
        # Ordered set of the activations this step waits on.
        self.deps: dict[Activation, None] = {}
        self.unprovided: list[str] | None = None  # made only when there is one


def activate(
    store: Store,
    providers: Mapping[str, Step[Any]],
    *,
    step: Step[Any] | None = None,
    names: Sequence[str] = (),
    strict: bool,
    hint: str | None = None,
) -> list[Activation]:
    """Activate what ``step`` (or the resources ``names``) need, and return the direct demands.

    Walks the missing part of the graph depth first with an explicit stack, so depth costs no
    recursion. ``strict`` (a step call) raises `MissingResourceError` for inputs nothing can
    supply, before anything starts, also when they are awaited by steps already active;
    otherwise such inputs are awaited until someone pushes them. A provider met again on the
    walk's own path, or the step whose task makes this demand, is a `CycleError`. ``step``
    itself is activated (privately if it provides nothing) unless it is active already. Each
    returned activation carries one demand for the caller, withdrawn with `release`.
    """
    active = store.active
    created: dict[Step[Any], Activation] = {}
    on_path: dict[Step[Any], int] = {}
    order: list[Activation] = []
    missing: list[tuple[str, tuple[str, ...]]] = []
    stack: list[_Frame] = []
    root = _Frame(step, None) if step is not None else None
    running = _running.get()

    def chain() -> tuple[str, ...]:
        return tuple(frame.step.name for frame in reversed(stack))

    def inspect_active(found: Activation, via: str) -> None:
        # An activation of an earlier demand: look through it (iteratively) for inputs that
        # only a push can supply, and for the step that is making this demand.
        seen: set[Activation] = set()
        work = [(found, (found.step.name, *chain()))]
        while work:
            activation, needed_by = work.pop()
            if activation in seen or activation.finished:
                continue
            seen.add(activation)
            if activation is running:
                # `via` flows up the walk's stack to what the running step awaits inside.
                path = [via]
                for frame in reversed(stack):
                    path += [frame.step.name, frame.via or frame.step.name]
                raise CycleError([*path, activation.step.name, activation.step.provides[0]])
            if strict and activation.unprovided:
                missing.extend(
                    (name, needed_by) for name in activation.unprovided if not store.present(name)
                )
            work.extend((up, (up.step.name, *needed_by)) for up in activation.upstream)

    def need(name: str, has_default: bool, frame: _Frame | None) -> None:
        if store.present(name):
            return
        provider = providers.get(name)
        if provider is None:
            if not has_default:
                if strict:
                    missing.append((name, chain()))
                elif frame is not None:
                    if frame.unprovided is None:
                        frame.unprovided = []
                    frame.unprovided.append(name)
            return
        deps = frame.deps if frame is not None else top
        found = created.get(provider)
        if found is None:
            found = active.get(provider)
            if found is not None:
                inspect_active(found, name)
        if found is not None:
            deps[found] = None
            return
        at = on_path.get(provider)
        if at is not None:
            path = [name]
            for frame_ in reversed(stack[at + 1 :]):
                path += [frame_.step.name, frame_.via or ""]
            raise CycleError([*path, provider.name, name])
        on_path[provider] = len(stack)
        stack.append(_Frame(provider, name))

    def walk() -> None:
        while stack:
            frame = stack[-1]
            params = frame.step.params
            if frame.index < len(params):
                param = params[frame.index]
                frame.index += 1
                need(param.name, param.has_default, frame)
                continue
            stack.pop()
            del on_path[frame.step]
            private = frame is root and not frame.step.provides
            activation = Activation(frame.step, store, private)
            activation.upstream = list(frame.deps)
            activation.unprovided = frame.unprovided
            if not private:
                created[frame.step] = activation
            order.append(activation)
            (stack[-1].deps if stack else top)[activation] = None

    top: dict[Activation, None] = {}
    if root is not None:
        found = active.get(root.step) if root.step.provides else None
        if found is not None:
            inspect_active(found, root.step.provides[0])
            top[found] = None
        else:
            on_path[root.step] = 0
            stack.append(root)
            walk()
    for name in names:
        need(name, False, None)
        walk()
    if missing:
        raise MissingResourceError(missing, step.name if step is not None else names[0], hint)
    # Nothing starts before the whole walk has succeeded.
    for activation in order:
        if not activation.private:
            active[activation.step] = activation
        for upstream in activation.upstream:
            upstream.demand += 1
    for activation in order:
        activation.start()
    demands = list(top)
    for activation in demands:
        activation.demand += 1
    return demands
