"""Activation: one demanded step in one store, from subscription to its inputs to its outputs.

The data path: a demand walks the missing part of the graph (iteratively, so depth is free),
creates an `Activation` per provider that must run, and each activation subscribes a `Join` to
its input subjects. When the join has every input, the step runs as a task on the store's loop
and completes its output subjects, which in turn complete the joins of its dependents. Demand is
reference-counted: when nobody needs a pending activation any more it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._events import StepEvent
from ._executors import run_sync
from ._format import add_note, chain_text, remove_note
from ._join import Join, Slot
from ._store import Resource, Store, complete_all, fail_subject, is_present
from .exceptions import CycleError, MissingResourceError, PipelineError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = [
    "Activation",
    "Failure",
    "Link",
    "activate",
    "fail_downstream",
    "failure_chain",
    "release",
]

logger = logging.getLogger("pipeliner_rx")

# The activation whose step is running in the current task: a demand made from inside a step
# that comes back to that same step would wait on itself.
_running: contextvars.ContextVar[Activation | None] = contextvars.ContextVar(
    "pipeliner_rx_running", default=None
)

# Start steps' tasks eagerly (Python 3.12+ ``eager_start``): a step runs up to its first
# suspension in the callback that readied it, in a task of its own. Off by default; the
# benchmarks measure it (PIPELINER_EAGER_START=1).
EAGER_START = sys.version_info >= (3, 12) and os.environ.get("PIPELINER_EAGER_START") == "1"


class Activation:
    """A step demanded in a store: waiting for inputs, running, or finished."""

    __slots__ = (
        "cause",
        "context",
        "demand",
        "failure",
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
        self.outputs: list[Resource] = []
        self.inputs: Sequence[str] = ()
        self.upstream: list[Activation] = []
        # Inputs nothing provides, awaited until someone pushes them (lenient demand only).
        self.unprovided: list[str] | None = None
        self.demand = 0
        self.join: Join | None = None
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
            self.join = Join(subjects, self._ready, self._lost, self)

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
                logger.debug("skip %s: its outputs are present", step.label)
            self._retire()
            events = step.pipeline._events
            if events.observers:
                events.emit(StepEvent(step.label, "skipped", scope=store.id))
            return
        kwargs = dict(zip(self.inputs, values, strict=True))
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
        scope_var = step.pipeline._scope_var
        scope = store if store.id else None
        if context.get(scope_var) is not scope:
            context.run(scope_var.set, scope)
        if not EAGER_START and loop.get_task_factory() is None:
            task = loop.create_task(self._run(kwargs), context=context)
            if not task.done():
                self.task = task
        else:
            # A task factory may start tasks eagerly (`asyncio.eager_task_factory`): the
            # step's first part then runs inside `create_task`. Starts are queued while
            # another start or a demand's walk is under way, so that nothing runs before the
            # walk has subscribed everything, and a chain of steps that never suspend starts
            # one after the other instead of one inside the other.
            _start(loop, self, kwargs, context)

    def _launch(
        self, loop: asyncio.AbstractEventLoop, kwargs: dict[str, Any], context: contextvars.Context
    ) -> None:
        if self.finished:
            return  # cancelled while its start was queued
        if EAGER_START and loop.get_task_factory() is None:
            task = asyncio.Task(  # type: ignore[call-arg]  # 3.12+, checked above
                self._run(kwargs), loop=loop, context=context, eager_start=True
            )
        else:
            task = loop.create_task(self._run(kwargs), context=context)
        if not task.done():  # an eager task may have run to its end already
            self.task = task

    async def _run(self, kwargs: dict[str, Any]) -> None:
        _running.set(self)  # in this task's own context
        # Known from the first line on: an eager task's first part runs before `create_task`
        # returns, and whatever it does may cancel this very step.
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
                start = self._started(attempt)
                try:
                    if step.is_coroutine_function and step.timeout is None:
                        result = await step.fn(**kwargs)  # one coroutine less in the common case
                    else:
                        result = await self._attempt(kwargs)
                except Exception as exc:
                    if attempt <= step.retries:
                        self._attempt_failed(exc, start, attempt)
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
            # The task's context holds this activation (`_running`): letting go of the task
            # leaves no cycle for the garbage collector.
            self.task = None

    def _started(self, attempt: int) -> float:
        """Log and announce an attempt; its start time, or 0.0 when nobody watches."""
        step = self.step
        events = step.pipeline._events
        debug = logger.isEnabledFor(logging.DEBUG)
        if not debug and not events.observers:
            return 0.0  # the common case costs two checks, not a clock reading
        if debug:
            logger.debug("start %s", step.label)
        if events.observers:
            events.emit(StepEvent(step.label, "started", scope=self.store.id, attempt=attempt))
        return time.perf_counter()

    def _attempt_failed(self, exc: BaseException, start: float, attempt: int) -> None:
        step = self.step
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("failed %s (attempt %d): %r", step.label, attempt, exc)
        events = step.pipeline._events
        if events.observers:
            elapsed = time.perf_counter() - start if start else None
            events.emit(StepEvent(step.label, "failed", elapsed, exc, self.store.id, attempt))

    def _give_up(self, exc: BaseException, start: float, attempt: int) -> None:
        """The step failed for good: note it on the error, fail its outputs, then tell."""
        if self.finished:
            return  # cancelled meanwhile: nobody waits for this run any more
        if isinstance(exc, StopIteration):  # a Future refuses it; asyncio would hang on it
            exc = _stop_iteration(self.step, exc)
        self.failure = Failure(exc, self.step, attempt)
        self._fail(exc)
        self._attempt_failed(exc, start, attempt)

    def _cancelled(self, start: float, attempt: int) -> None:
        step = self.step
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("cancelled %s", step.label)
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
        events = step.pipeline._events
        if events.observers:
            elapsed = time.perf_counter() - start if start else None
            events.emit(StepEvent(step.label, "cancelled", elapsed, None, self.store.id, attempt))

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
            result = step.fn(**kwargs)
            # An async callable that is not a coroutine function may hand back any awaitable
            # (or, exceptionally, the value itself).
            return await result if inspect.isawaitable(result) else result
        executor = step.executor if step.executor is not None else step.pipeline.executor
        result = await run_sync(step, kwargs, executor)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited, on purpose: no "never awaited" warning
            raise TypeError(
                f"`{step.name}` is a plain `def` step but returned an awaitable "
                f"({type(result).__name__}). Make it `async def` so its result is awaited, "
                f"or return the value itself."
            )
        return result

    def _emit(self, result: Any, start: float, attempt: int) -> None:
        if self.finished:
            return  # cancelled, but the step swallowed the cancellation and returned
        step = self.step
        count = len(step.provides)
        if count <= 1:
            values: Sequence[Any] = (result,)
        else:
            values = tuple(result) if isinstance(result, (tuple, list)) else ()
            if len(values) != count:
                self._give_up(StepOutputError(step.name, step.provides, result), start, attempt)
                return
        self._retire()
        if start and logger.isEnabledFor(logging.DEBUG):  # before dependents (may) run
            logger.debug("finish %s", step.label)
        # Every output is held before any dependent hears of one (an emission is atomic).
        complete_all(self._subjects(), values)
        if start:  # someone watched it start
            events = step.pipeline._events
            if events.observers:
                elapsed = time.perf_counter() - start
                events.emit(
                    StepEvent(step.label, "succeeded", elapsed, None, self.store.id, attempt)
                )

    def _lost(self, error: Exception, index: int) -> None:
        """An input failed: this step cannot run, and fails its outputs with the same error.

        Failures usually retire their dependents before anyone hears of them
        (`fail_downstream`); this is for inputs failed otherwise (a feed's error).
        """
        self.join = None
        if not self.finished:
            fail_downstream(self._detach(), error, self)

    def _detach(self) -> list[tuple[str, Resource]]:
        """Retire, stop listening, release upstream, and take the outputs out of the store."""
        self._retire()
        if self.join is not None:
            self.join.dispose()
            self.join = None
        if self.private:
            old = [("", subject) for subject in self.outputs]
        else:
            old = self.store.detach(self.step.provides)
        upstream, self.upstream = self.upstream, []
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
        if self.join is not None:
            self.join.dispose()
            self.join = None
        task = self.task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()
            stopping = self.store.stopping
            stopping.add(task)
            task.add_done_callback(stopping.discard)


_Start = tuple[asyncio.AbstractEventLoop, Activation, dict[str, Any], Any]


class _Starts(threading.local):
    """Step starts waiting for the current walk or start to finish, per thread."""

    queue: deque[_Start] | None = None


_starts = _Starts()


def _start(
    loop: asyncio.AbstractEventLoop,
    activation: Activation,
    kwargs: dict[str, Any],
    context: contextvars.Context,
) -> None:
    queue = _starts.queue
    if queue is not None:
        queue.append((loop, activation, kwargs, context))
        return
    with _starts_held() as queue:
        queue.append((loop, activation, kwargs, context))


@contextlib.contextmanager
def _starts_held() -> Iterator[deque[_Start]]:
    """Queue step starts until the block ends, then start them (and those they cause) in turn."""
    outer = _starts.queue
    if outer is not None:
        yield outer  # the outermost holder starts them
        return
    queue: deque[_Start] = deque()
    _starts.queue = queue
    try:
        yield queue
    finally:
        try:
            while queue:
                loop, activation, kwargs, context = queue.popleft()
                activation._launch(loop, kwargs, context)
        finally:
            _starts.queue = None


class Link(Activation):
    """A shared step, as a scope sees it: demanded in the pipeline's store, read from there.

    The step runs (at most once) in the pipeline's own store; the link holds a demand there
    and completes the scope's resources with the same values when they arrive.
    """

    __slots__ = ()

    def start(self) -> None:
        """Listen to the shared outputs in the pipeline's store."""
        home = self.store.root
        assert home is not None  # links are made only in scopes
        subjects = [home.subject(name) for name in self.step.provides]
        self.join = Join(subjects, self._ready, self._lost, self)

    def _ready(self, values: list[Any]) -> None:
        self.join = None
        if self.finished:
            return
        self._retire()
        upstream, self.upstream = self.upstream, []
        release(upstream)
        complete_all(self._subjects(), values)

    def cancel(self, error: Exception | None = None) -> None:
        """Stop listening, and withdraw the demand in the pipeline's store."""
        super().cancel(error)
        upstream, self.upstream = self.upstream, []
        release(upstream)


def _shared_hint(step: Step[Any]) -> str:
    return (
        f"`{step.name}` is shared (`shared=True`): it runs in the pipeline's own store, so it "
        f"may need only the pipeline's environment and other shared steps, not a scope's "
        f"values. Push what it needs with `add_environment_resources(...)` outside any scope, "
        f"or drop `shared=True`."
    )


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
            if not isinstance(observer, Slot):
                continue
            dependent = observer.owner
            if not isinstance(dependent, Activation) or dependent.finished:
                continue
            if upstream is not None:
                dependent.cause = (name, upstream)
                if upstream.failure is not None and upstream.failure.error is error:
                    dependent.failure = upstream.failure
            work.extend((n, s, dependent) for n, s in dependent._detach())
    for subject in failed:
        fail_subject(subject, error)


def _stop_iteration(step: Step[Any], error: StopIteration) -> RuntimeError:
    replacement = RuntimeError(
        f"`{step.name}` raised StopIteration, which asyncio cannot deliver to a waiter; it is "
        f"raised as this RuntimeError instead (see its __cause__)."
    )
    replacement.__cause__ = error
    return replacement


class Failure:
    """One step's failure as its error's notes tell it.

    The step that raised is noted on the error at once. The data-flow chain from it to what a
    caller demanded is noted only while a single caller has heard of the error: the instance
    is shared by every waiter, and no caller may see a note about another caller's demand.
    """

    __slots__ = ("callers", "error", "note")

    def __init__(self, error: BaseException, step: Step[Any], attempts: int) -> None:
        self.error = error
        names = ", ".join(f"`{name}`" for name in step.provides)
        tries = f" in each of {attempts} attempts" if attempts > 1 else ""
        _strip_library_notes(error)
        add_note(
            error,
            f"{_RAISED}`{step.name}`{tries}" + (f", which provides {names}." if names else "."),
        )
        self.callers = 0
        self.note: str | None = None

    def reached(self, what: str, chain: list[str]) -> None:
        """A caller waiting for ``what`` hears of the error, which came along ``chain``."""
        self.callers += 1
        if self.callers == 1 and len(chain) > 1:
            self.note = f"{what}{_STOPPED}{chain_text(chain)}."
            add_note(self.error, self.note)
        elif self.note is not None:
            remove_note(self.error, self.note)
            self.note = None


_RAISED = "Raised by step "
_STOPPED = " could not be computed: "


def failure_chain(activation: Activation) -> list[str]:
    """Data-flow chain from the step that raised to ``activation``: step, resource, step, ..."""
    chain = [activation.step.label]
    cause = activation.cause
    while cause is not None:
        name, upstream = cause
        chain += [name, upstream.step.label]
        cause = upstream.cause
    chain.reverse()
    return chain


def _strip_library_notes(error: BaseException) -> None:
    # The same exception instance raised again: the notes of its earlier failure are stale.
    try:
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [n for n in notes if not (n.startswith(_RAISED) or _STOPPED in n)]
    except Exception:
        pass


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
    supplied: Mapping[str, Any] | None = None,
) -> list[Activation]:
    """Activate what ``step`` (or the resources ``names``) need, and return the direct demands.

    Walks the missing part of the graph depth first with an explicit stack, so depth costs no
    recursion. ``strict`` (a step call) raises `MissingResourceError` for inputs nothing can
    supply, before anything starts, also when they are awaited by steps already active;
    otherwise such inputs are awaited until someone pushes them. A provider met again on the
    walk's own path, or the step whose task makes this demand, is a `CycleError`. ``step``
    itself is activated (privately if it provides nothing) unless it is active already. Each
    returned activation carries one demand for the caller, withdrawn with `release`.

    ``supplied`` are the call's own values: the walk treats them as present, and they are
    pushed only once the walk has succeeded, so a rejected call leaves the store as it was.
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
        if store.present(name) or (supplied and name in supplied):
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
        if provider.shared and home is not None:
            link = Link(provider, store, False, context)
            created[provider] = link
            order.append(link)
            links.append(link)
            deps[link] = None
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
            activation = Activation(frame.step, store, private, context)
            activation.upstream = list(frame.deps)
            activation.unprovided = frame.unprovided
            if not private:
                created[frame.step] = activation
            order.append(activation)
            (stack[-1].deps if stack else top)[activation] = None

    top: dict[Activation, None] = {}
    context = contextvars.copy_context()
    home = store.root  # a scope's pipeline store, where its shared steps run
    links: list[Link] = []
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
    loop = store.loop
    if EAGER_START or (loop is not None and loop.get_task_factory() is not None):
        # Tasks may start eagerly: none starts before every activation has subscribed.
        with _starts_held():
            return _commit(store, providers, order, links, list(top), supplied)
    return _commit(store, providers, order, links, list(top), supplied)


def _commit(
    store: Store,
    providers: Mapping[str, Step[Any]],
    order: list[Activation],
    links: list[Link],
    demands: list[Activation],
    supplied: Mapping[str, Any] | None,
) -> list[Activation]:
    """Make a successful walk real: shared demands, demand counts, the call's values, starts."""
    # Shared steps are demanded in the pipeline's store (each demand counted there once).
    shared_demands: list[list[Activation]] = []
    home = store.root
    for link in links:
        assert home is not None and store.loop is not None
        try:
            home.bind(store.loop)
            shared_demands.append(
                activate(
                    home,
                    providers,
                    names=link.step.provides,
                    strict=True,
                    hint=_shared_hint(link.step),
                )
            )
        except BaseException:
            for made in shared_demands:
                release(made)
            raise
    # Nothing changes in this store before the whole walk has succeeded.
    active = store.active
    for activation in order:
        if not activation.private:
            active[activation.step] = activation
        for upstream in activation.upstream:
            upstream.demand += 1
    for link, demanded in zip(links, shared_demands, strict=True):
        link.upstream = demanded
    for activation in demands:
        activation.demand += 1
    if supplied:
        store.push(supplied)
    _start_all(order)
    return demands


def _start_all(order: list[Activation]) -> None:
    for activation in order:
        if not activation.finished:
            activation.start()
