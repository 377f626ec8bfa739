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

from reactivex.subject import AsyncSubject

from ._events import StepEvent
from ._executors import run_sync
from ._join import Join
from ._store import Store, emit, is_present
from .exceptions import CycleError, MissingResourceError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Activation", "activate", "failure_chain", "release"]

logger = logging.getLogger("pipeliner_rx")


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
        "upstream",
    )

    def __init__(self, step: Step[Any], store: Store, private: bool) -> None:
        self.step = step
        self.store = store
        # A step that provides nothing, run for its caller: its result goes to a private subject.
        self.private = private
        self.outputs: list[AsyncSubject[Any]] = []
        self.inputs: list[str] = []
        self.upstream: list[Activation] = []
        self.demand = 0
        self.join: Join | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.cause: tuple[str, Activation] | None = None

    def start(self) -> None:
        """Subscribe to the inputs; the step runs once all of them hold a value."""
        store = self.store
        if self.private:
            self.outputs = [AsyncSubject()]
        else:
            self.outputs = [store.subject(name) for name in self.step.provides]
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("activate %s", self.step.name)
        providers = self.step.pipeline._providers
        self.inputs = [
            p.name
            for p in self.step.params
            if not p.has_default or p.name in providers or store.present(p.name)
        ]
        self.join = Join([store.subject(name) for name in self.inputs], self._ready, self._lost)

    def _ready(self, values: list[Any]) -> None:
        self.join = None
        self.upstream = []  # all finished: nothing left to release
        step = self.step
        store = self.store
        if not self.private and all(is_present(subject) for subject in self.outputs):
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("skip %s: its outputs are present", step.name)
            events = step.pipeline._events
            if events.listening:
                events.emit(StepEvent(step.name, "skipped", scope=store.id))
            self._retire()
            return
        kwargs = {p.name: p.default for p in step.params if p.has_default}
        kwargs.update(zip(self.inputs, values, strict=True))
        loop = store.loop
        assert loop is not None  # a store is bound before anything is activated
        # The step runs in its store's scope, whoever completed its last input.
        var = step.pipeline._scope_var
        scope = store if store.id else None
        if var.get() is scope:
            self.task = loop.create_task(self._run(kwargs))
        else:
            context = contextvars.copy_context()
            context.run(var.set, scope)
            self.task = loop.create_task(self._run(kwargs), context=context)

    async def _run(self, kwargs: dict[str, Any]) -> None:
        step = self.step
        events = step.pipeline._events
        scope = self.store.id
        attempt = 0
        while True:
            attempt += 1
            debug = logger.isEnabledFor(logging.DEBUG)
            if debug:
                logger.debug("start %s", step.name)
            if events.listening:
                events.emit(StepEvent(step.name, "started", scope=scope, attempt=attempt))
            start = time.perf_counter()
            try:
                result = await self._attempt(kwargs)
            except asyncio.CancelledError:
                # Resources stay missing, so a later demand computes them afresh.
                if debug:
                    logger.debug("cancelled %s", step.name)
                if events.listening:
                    elapsed = time.perf_counter() - start
                    events.emit(StepEvent(step.name, "cancelled", elapsed, None, scope, attempt))
                raise
            except Exception as exc:
                if debug:
                    logger.debug("failed %s (attempt %d): %r", step.name, attempt, exc)
                if events.listening:
                    elapsed = time.perf_counter() - start
                    events.emit(StepEvent(step.name, "failed", elapsed, exc, scope, attempt))
                if attempt <= step.retries:
                    if step.retry_delay:
                        await asyncio.sleep(step.retry_delay)
                    continue
                names = ", ".join(f"`{name}`" for name in step.provides)
                tries = f" in each of {attempt} attempts" if attempt > 1 else ""
                exc.add_note(
                    f"Raised by step `{step.name}`{tries}"
                    + (f", which provides {names}." if names else ".")
                )
                self._fail(exc)
                return
            if debug:
                logger.debug("finish %s", step.name)
            if events.listening:
                elapsed = time.perf_counter() - start
                events.emit(StepEvent(step.name, "succeeded", elapsed, None, scope, attempt))
            self._emit(result)
            return

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
        outputs = self.outputs
        if len(outputs) == 1:
            values: Sequence[Any] = (result,)
        elif isinstance(result, (tuple, list)) and len(result) == len(outputs):
            values = result
        else:
            self._fail(StepOutputError(self.step.name, self.step.provides, result))
            return
        self._retire()
        for subject, value in zip(outputs, values, strict=True):
            emit(subject, value)

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
            for name, subject in zip(self.step.provides, self.outputs, strict=True):
                self.store.fail(name, subject, error)
        upstream, self.upstream = self.upstream, []
        release(upstream)

    def _retire(self) -> None:
        self.finished = True
        active = self.store.active
        if active.get(self.step) is self:
            del active[self.step]

    def cancel(self) -> None:
        """Stop waiting or running; the outputs stay missing."""
        if self.finished:
            return
        self._retire()
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
    __slots__ = ("deps", "index", "step", "via")

    def __init__(self, step: Step[Any], via: str | None) -> None:
        self.step = step
        self.via = via
        self.index = 0
        # Ordered set of the activations this step waits on.
        self.deps: dict[Activation, None] = {}


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
    supply, before anything starts; otherwise such inputs are awaited until someone pushes them.
    A provider met again on the walk's own path is a `CycleError`. ``step`` itself is activated
    (privately if it provides nothing). Each returned activation carries one demand for the
    caller, to be withdrawn with `release` if the caller goes away early.
    """
    active = store.active
    created: dict[Step[Any], Activation] = {}
    on_path: dict[Step[Any], int] = {}
    order: list[Activation] = []
    missing: list[tuple[str, tuple[str, ...]]] = []
    stack: list[_Frame] = []
    root = _Frame(step, None) if step is not None else None

    def need(name: str, has_default: bool, deps: dict[Activation, None]) -> None:
        if store.present(name):
            return
        provider = providers.get(name)
        if provider is None:
            if strict and not has_default:
                missing.append((name, tuple(frame.step.name for frame in reversed(stack))))
            return
        found = active.get(provider) or created.get(provider)
        if found is not None:
            deps[found] = None
            return
        at = on_path.get(provider)
        if at is not None:
            path = [name]
            for frame in reversed(stack[at + 1 :]):
                path += [frame.step.name, frame.via or ""]
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
                need(param.name, param.has_default, frame.deps)
                continue
            stack.pop()
            del on_path[frame.step]
            private = frame is root and not frame.step.provides
            activation = Activation(frame.step, store, private)
            activation.upstream = list(frame.deps)
            if not private:
                created[frame.step] = activation
            order.append(activation)
            (stack[-1].deps if stack else top)[activation] = None

    top: dict[Activation, None] = {}
    if root is not None:
        on_path[root.step] = 0
        stack.append(root)
        walk()
    for name in names:
        need(name, False, top)
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
