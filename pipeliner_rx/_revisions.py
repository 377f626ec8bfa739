"""The revision scheduler of a live store: cells, steps, demand, and the runs that settle them.

A live store keeps a `Cell` per resource (its latest value or error, and the revision that last
changed it: its *stamp*) and a `Node` per step that provides something. A revision changes some
cells; the scheduler then

1. marks *dirty* every needed step downstream of a change (needed: something observed or
   awaited depends on it), and counts for each dirty step its inputs still pending;
2. evaluates each dirty step whose inputs have all settled: a step whose inputs carry the stamps
   of its last evaluation settles at once without running; otherwise it runs, in a task of its
   own, and its outputs settle with the result. An output equal to the previous value keeps its
   stamp, so the steps below do not rerun on its account (the cutoff);
3. cancels a run as soon as one of its inputs changes (its result would be stale), and holds
   back the result of a run that finishes while a step above it is still dirty until that step
   has settled, so no step ever sees inputs from two revisions.

Dirty is closed downwards (a needed step below a dirty step is dirty), so a settled cell is
consistent with the latest revision. A push costs what it reaches, not the size of the graph.
Every walk is iterative: depth costs no recursion.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._compare import same
from ._events import EventKind, Events, StepEvent
from ._executors import Executor, run_sync
from .exceptions import CycleError, PipelineError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["CLEAN", "DIRTY", "IDLE", "Cell", "Node", "Scheduler", "Watcher"]

logger = logging.getLogger("pipeliner_rx")

# A node's state. IDLE: nothing needs it (its outputs may be stale; nobody looks). CLEAN: its
# outputs are consistent with the latest revision. DIRTY: needed, and not settled yet (waiting
# for inputs, running, or blocked on an input nobody has pushed).
IDLE, CLEAN, DIRTY = 0, 1, 2


class Watcher(Protocol):
    """Something told whenever a cell settles: an observer or a waiting ``get``."""

    def update(self, cell: Cell) -> None:
        """The cell settled (possibly with the same value as before)."""


class Cell:
    """One resource of a live store: its latest value or error, its stamps, who needs it."""

    __slots__ = (
        "consumers",
        "demand",
        "error",
        "has_value",
        "name",
        "pinned",
        "provider",
        "stamp",
        "value",
        "value_stamp",
        "watchers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.provider: Node | None = None
        self.consumers: list[Node] = []  # the steps with outputs that take it as a parameter
        self.pinned = False  # pushed although a step provides it: the pushed value wins
        self.has_value = False
        self.value: Any = None  # kept while the cell holds an error: the last good value
        self.error: Exception | None = None
        self.stamp = 0  # the revision that last changed the value or the error
        self.value_stamp = 0  # the revision that last changed the value (what observers see)
        self.demand = 0  # observers, gets and needed consumers
        self.watchers: list[Watcher] = []

    @property
    def settled(self) -> bool:
        """Whether the cell is consistent with the latest applied revision."""
        provider = self.provider
        return provider is None or self.pinned or provider.state == CLEAN


class Node:
    """A step that provides something, and where it stands in the current revision."""

    __slots__ = (
        "held",
        "inputs",
        "need",
        "outputs",
        "queued",
        "run",
        "seen",
        "state",
        "step",
        "waiting",
    )

    def __init__(self, step: Step[Any], inputs: list[Cell], outputs: list[Cell]) -> None:
        self.step = step
        self.inputs = inputs  # one cell per parameter, in signature order
        self.outputs = outputs  # one cell per output, in ``provides`` order
        self.need = 0  # how many of its unpinned outputs are demanded
        self.state = IDLE
        self.waiting = 0  # while DIRTY: inputs whose (unpinned) provider is DIRTY
        self.queued = False
        self.run: Run | None = None
        self.held: Outcome | None = None  # a finished run, waiting for the steps above to settle
        self.seen: list[int] | None = None  # input stamps of the last evaluation (None: rerun)


class Run:
    """One run of a step: the revision and input stamps it was given, and its task."""

    __slots__ = ("cancelled", "node", "revision", "stamps", "task")

    def __init__(self, node: Node, revision: int, stamps: list[int]) -> None:
        self.node = node
        self.revision = revision
        self.stamps = stamps
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None


class Outcome:
    """What a finished run produced, held back until the steps above it settle."""

    __slots__ = ("error", "stamps", "value")

    def __init__(self, stamps: list[int], value: Any, error: Exception | None) -> None:
        self.stamps = stamps
        self.value = value
        self.error = error


class Scheduler:
    """The cells and steps of one live store, and the work that brings them up to date.

    All of it runs on the store's event loop thread; the `LiveStore` hands work over.
    """

    def __init__(
        self,
        steps: Iterable[Step[Any]],
        providers: Mapping[str, Step[Any]],
        events: Events,
        errors: Events,
        executor: Executor,
        store_id: int,
    ) -> None:
        self.cells: dict[str, Cell] = {}
        self.nodes: list[Node] = []
        self.events = events
        self.errors = errors
        self.executor = executor
        self.id = store_id
        self.revision = 0  # the latest applied revision
        self.loop: asyncio.AbstractEventLoop | None = None
        # Steps run in copies of the context the store was made in, not of whichever task or
        # callback happened to settle their inputs.
        self.context = contextvars.copy_context()
        self.ready: deque[Node] = deque()
        self.draining = False
        self.step_runs = 0
        self.cancelled_runs = 0
        self.cutoffs = 0
        made: set[Step[Any]] = set()
        for step in providers.values():
            if step in made:
                continue
            made.add(step)
            node = Node(
                step,
                [self.cell(param.name) for param in step.params],
                [self.cell(name) for name in step.provides],
            )
            self.nodes.append(node)
            for cell in node.outputs:
                cell.provider = node
            for cell in node.inputs:
                cell.consumers.append(node)
        for step in steps:  # steps that provide nothing: their parameters are resources too
            for param in step.params:
                self.cell(param.name)

    def cell(self, name: str) -> Cell:
        """The cell of ``name``, created empty if there is none yet."""
        cell = self.cells.get(name)
        if cell is None:
            cell = self.cells[name] = Cell(name)
        return cell

    # -- revisions ------------------------------------------------------------------------------

    def apply(
        self,
        revision: int,
        values: Mapping[str, Any],
        unpins: Iterable[str],
        invalidated: Iterable[str],
    ) -> bool:
        """Apply one revision: unpins, then pushes, then invalidations. Whether it changed
        anything (a value, an error, a pin, or a step to rerun)."""
        self.revision = revision
        marks: list[Node] = []  # steps whose inputs may change: dirty from here down
        recount: list[Node] = []  # steps whose pending inputs may have changed
        changed: list[Cell] = []
        pinned: list[Cell] = []
        anything = False
        for name in unpins:
            cell = self.cells[name]
            provider = cell.provider
            if not cell.pinned or provider is None:
                continue
            anything = True
            cell.pinned = False
            provider.seen = None  # its value for `name` was overridden: compute it afresh
            self._cancel(provider)
            if cell.demand:
                recount += self._need(provider)
            marks.append(provider)
            marks += cell.consumers
        for name, value in values.items():
            cell = self.cell(name)
            if cell.provider is not None and not cell.pinned:
                anything = True
                cell.pinned = True
                if cell.demand:
                    self._release(cell.provider)
                recount += cell.consumers
                pinned.append(cell)  # settled now, even if its value stays
            equal = cell.has_value and same(cell.value, value)
            if equal and cell.error is None:
                continue
            if not equal:
                cell.value = value
                cell.has_value = True
                cell.value_stamp = revision
            cell.error = None
            cell.stamp = revision
            changed.append(cell)
        for name in invalidated:
            anything = True
            cell = self.cell(name)
            provider = cell.provider
            if provider is not None and not cell.pinned:
                provider.seen = None
                self._cancel(provider)
                marks.append(provider)
            else:  # an input: its consumers rerun, as if it had changed
                cell.stamp = revision
                changed.append(cell)
        for cell in changed:
            self._stale(cell)
            marks += cell.consumers
        self._refresh(marks, recount)
        for cell in dict.fromkeys([*changed, *pinned]):
            if cell.watchers:
                self._notify(cell)
        return anything or bool(changed)

    # -- demand ---------------------------------------------------------------------------------

    def demand(self, cell: Cell, pinned: Callable[[Cell], bool]) -> None:
        """One more observer or ``get`` needs ``cell``: make its providers run if they must.

        ``pinned`` tells which cells will be pinned once the pending revision is applied: a
        cycle that a pending push breaks is no cycle.

        Raises:
            CycleError: the providers of ``cell`` depend on it.
        """
        provider = cell.provider
        if cell.demand == 0 and provider is not None and not pinned(cell) and not provider.need:
            path = self.cycle(provider, pinned, idle_only=True)
            if path is not None:
                raise CycleError(path)
        cell.demand += 1
        if cell.demand == 1 and provider is not None and not cell.pinned:
            self._refresh((), self._need(provider))

    def withdraw(self, cell: Cell) -> None:
        """Undo one `demand`; steps nothing needs any more are cancelled."""
        cell.demand -= 1
        provider = cell.provider
        if cell.demand == 0 and provider is not None and not cell.pinned:
            self._release(provider)

    def _need(self, node: Node) -> list[Node]:
        """One more demanded output of ``node``; return the steps that became needed (DIRTY)."""
        newly: list[Node] = []
        stack = [node]
        while stack:
            current = stack.pop()
            current.need += 1
            if current.need > 1:
                continue
            current.state = DIRTY
            newly.append(current)
            for cell in current.inputs:
                cell.demand += 1
                provider = cell.provider
                if cell.demand == 1 and provider is not None and not cell.pinned:
                    stack.append(provider)
        return newly

    def _release(self, node: Node) -> None:
        """One demanded output of ``node`` fewer; steps nothing needs are cancelled (IDLE)."""
        stack = [node]
        while stack:
            current = stack.pop()
            current.need -= 1
            if current.need:
                continue
            self._cancel(current)
            current.state = IDLE
            current.waiting = 0
            for cell in current.inputs:
                cell.demand -= 1
                provider = cell.provider
                if cell.demand == 0 and provider is not None and not cell.pinned:
                    stack.append(provider)

    def cycle(
        self, start: Node, pinned: Callable[[Cell], bool], idle_only: bool
    ) -> list[str] | None:
        """A cycle among the providers ``start`` would need, in data-flow order, or None.

        ``pinned`` tells which cells cut the graph; with ``idle_only`` the walk stops at steps
        already needed (the needed part is acyclic, so a new cycle cannot pass through it).
        """
        on_stack: dict[Node, int] = {start: 0}
        done: set[Node] = set()
        # Frames: [node, index of the next input, the cell through which it was reached].
        stack: list[list[Any]] = [[start, 0, ""]]
        while stack:
            frame = stack[-1]
            node: Node = frame[0]
            index: int = frame[1]
            if index == len(node.inputs):
                stack.pop()
                del on_stack[node]
                done.add(node)
                continue
            frame[1] = index + 1
            cell = node.inputs[index]
            provider = cell.provider
            if provider is None or provider in done or pinned(cell):
                continue
            if idle_only and provider.need:
                continue
            at = on_stack.get(provider)
            if at is not None:
                path = [cell.name]
                for upper in reversed(stack[at + 1 :]):
                    path += [upper[0].step.name, upper[2]]
                return [*path, provider.step.name, cell.name]
            on_stack[provider] = len(stack)
            stack.append([provider, 0, cell.name])
        return None

    # -- settling -------------------------------------------------------------------------------

    def _refresh(self, marks: Iterable[Node], recount: list[Node]) -> None:
        """Mark ``marks`` and the needed steps below them dirty, recount their pending inputs,
        and evaluate what is ready."""
        stack = list(marks)
        while stack:
            node = stack.pop()
            state = node.state
            if state == IDLE:
                continue
            recount.append(node)
            if state == DIRTY:
                continue  # already dirty, and so is everything needed below it
            node.state = DIRTY
            for cell in node.outputs:
                if not cell.pinned:
                    stack += cell.consumers
        ready = self.ready
        for node in dict.fromkeys(recount):
            if node.state != DIRTY:
                continue
            waiting = 0
            for cell in node.inputs:
                provider = cell.provider
                if provider is not None and provider.state == DIRTY and not cell.pinned:
                    waiting += 1
            node.waiting = waiting
            if not waiting and not node.queued:
                node.queued = True
                ready.append(node)
        self.drain()

    def drain(self) -> None:
        """Evaluate every dirty step whose inputs have settled, in data-flow order."""
        if self.draining or self.loop is None or self.loop.is_closed():
            return
        self.draining = True
        ready = self.ready
        try:
            while ready:
                node = ready.popleft()
                node.queued = False
                if node.state == DIRTY and not node.waiting and node.run is None:
                    self._evaluate(node)
        finally:
            self.draining = False

    def _evaluate(self, node: Node) -> None:
        held = node.held
        if held is not None:
            node.held = None
            self._apply(node, held.stamps, held.value, held.error)
            return
        inputs = node.inputs
        stamps = [cell.stamp for cell in inputs]
        if stamps == node.seen:
            self._settle(node, ())  # nothing it reads changed since it last ran
            return
        kwargs: dict[str, Any] = {}
        error: Exception | None = None
        for cell, param in zip(inputs, node.step.params, strict=True):
            if cell.error is not None:
                if error is None:
                    error = cell.error
            elif cell.has_value:
                kwargs[cell.name] = cell.value
            elif param.has_default:
                kwargs[cell.name] = param.default
            else:
                return  # an input that nothing provides has not been pushed: wait for it
        if error is not None:
            # An input failed: the step does not run, and its outputs carry the same error.
            node.seen = stamps
            changed = []
            for cell in node.outputs:
                if not cell.pinned and cell.error is not error:
                    cell.error = error
                    cell.stamp = self.revision
                    changed.append(cell)
            self._settle(node, changed)
            return
        loop = self.loop
        assert loop is not None  # drain runs only with a loop
        run = node.run = Run(node, self.revision, stamps)
        self.step_runs += 1
        run.task = loop.create_task(self._execute(run, kwargs), context=self.context.copy())

    def _apply(self, node: Node, stamps: list[int], value: Any, error: Exception | None) -> None:
        """A run's outcome becomes the step's outputs; equal values keep their stamps."""
        outputs = node.outputs
        values: Sequence[Any] = ()
        if error is None:
            if len(outputs) == 1:
                values = (value,)
            elif isinstance(value, (tuple, list)) and len(value) == len(outputs):
                values = value
            else:
                error = StepOutputError(node.step.name, node.step.provides, value)
        revision = self.revision
        changed = []
        if error is None:
            for cell, new in zip(outputs, values, strict=True):
                if cell.pinned:
                    continue  # the pushed value wins
                equal = cell.has_value and same(cell.value, new)
                if equal and cell.error is None:
                    continue
                if not equal:
                    cell.value = new
                    cell.has_value = True
                    cell.value_stamp = revision
                cell.error = None
                cell.stamp = revision
                changed.append(cell)
            if not changed:
                self.cutoffs += 1
        else:
            for cell in outputs:
                if not cell.pinned:
                    cell.error = error
                    cell.stamp = revision
                    changed.append(cell)
        node.seen = stamps
        self._settle(node, changed)

    def _settle(self, node: Node, changed: Sequence[Cell]) -> None:
        node.state = CLEAN
        for cell in changed:
            self._stale(cell)
        ready = self.ready
        for cell in node.outputs:
            if cell.pinned:
                continue
            for consumer in cell.consumers:
                if consumer.state == DIRTY:
                    consumer.waiting -= 1
                    if not consumer.waiting and not consumer.queued:
                        consumer.queued = True
                        ready.append(consumer)
        for cell in node.outputs:
            if cell.watchers and not cell.pinned:
                self._notify(cell)

    def _stale(self, cell: Cell) -> None:
        """``cell`` changed: runs that read its previous value are stale. Cancel them."""
        for consumer in cell.consumers:
            if consumer.run is not None or consumer.held is not None:
                self._cancel(consumer)

    def _notify(self, cell: Cell) -> None:
        for watcher in list(cell.watchers):  # a watcher may unsubscribe while being told
            watcher.update(cell)

    def _cancel(self, node: Node) -> None:
        """Stop the step's run, or drop its held-back result; it reruns when evaluated."""
        run = node.run
        if run is not None:
            node.run = None
            run.cancelled = True
            self.cancelled_runs += 1
            task = run.task
            if task is not None and not task.done() and not task.get_loop().is_closed():
                task.cancel()
        if node.held is not None:
            node.held = None
            self.cancelled_runs += 1

    def adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Work on ``loop`` from now on; runs of the previous (stopped) loop start afresh."""
        if self.loop is not None:
            for node in self.nodes:
                if node.run is not None:
                    node.run.cancelled = True
                    node.run = None
                    if node.state == DIRTY and not node.waiting and not node.queued:
                        node.queued = True
                        self.ready.append(node)
        self.loop = loop

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel every run; return the tasks still to finish."""
        tasks = []
        for node in self.nodes:
            run = node.run
            task = run.task if run is not None else None
            if task is not None and not task.done() and not task.get_loop().is_closed():
                tasks.append(task)
            self._cancel(node)
            node.state = IDLE
        self.ready.clear()
        return tasks

    # -- runs -----------------------------------------------------------------------------------

    async def _execute(self, run: Run, kwargs: dict[str, Any]) -> None:
        step = run.node.step
        attempt = 0
        while True:
            attempt += 1
            start = self._started(run, attempt)
            try:
                if step.is_async and step.timeout is None:
                    result = await step.fn(**kwargs)  # one coroutine less in the common case
                else:
                    result = await self._attempt(step, kwargs)
            except asyncio.CancelledError:
                self._interrupted(run, start, attempt)
                raise
            except Exception as exc:
                self._report(run, "failed", start, attempt, exc)
                if attempt <= step.retries:
                    if step.retry_delay:
                        try:
                            await asyncio.sleep(step.retry_delay)
                        except asyncio.CancelledError:
                            self._interrupted(run, start, attempt)
                            raise
                    continue
                note = (
                    f"Raised by step `{step.name}` in revision {run.revision} of live store "
                    f"{self.id}" + (f", in each of {attempt} attempts." if attempt > 1 else ".")
                )
                if note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
                self._finish(run, None, exc)
                return
            self._report(run, "succeeded", start, attempt)
            self._finish(run, result, None)
            return

    async def _attempt(self, step: Step[Any], kwargs: dict[str, Any]) -> Any:
        if step.timeout is None:
            return await self._invoke(step, kwargs)
        try:
            async with asyncio.timeout(step.timeout) as deadline:
                return await self._invoke(step, kwargs)
        except TimeoutError:
            if deadline.expired():
                raise TimeoutError(
                    f"`{step.name}` ran longer than its timeout of {step.timeout} s."
                ) from None
            raise

    async def _invoke(self, step: Step[Any], kwargs: dict[str, Any]) -> Any:
        if step.is_async:
            return await step.fn(**kwargs)
        executor = step.executor if step.executor is not None else self.executor
        return await run_sync(step, kwargs, executor)

    def _interrupted(self, run: Run, start: float, attempt: int) -> None:
        self._report(run, "cancelled", start, attempt)
        if not run.cancelled:
            # Not cancelled by the store: the step raised CancelledError itself, or someone
            # cancelled its task. Whoever waits on its outputs must hear of it.
            name = run.node.step.name
            self._finish(
                run,
                None,
                PipelineError(
                    f"`{name}` was cancelled from outside pipeliner_rx (it raised "
                    f"CancelledError, or its task was cancelled), so its outputs failed in "
                    f"revision {run.revision}. Push a changed input or call "
                    f"`invalidate(...)` to rerun it."
                ),
            )

    def _finish(self, run: Run, value: Any, error: Exception | None) -> None:
        node = run.node
        if node.run is not run:
            return  # cancelled meanwhile: the result is stale, and never used
        node.run = None
        if node.waiting:
            # A step above it is dirty again: the result stands only if that step's outputs
            # come out unchanged (otherwise `_stale` drops it).
            node.held = Outcome(run.stamps, value, error)
            return
        self._apply(node, run.stamps, value, error)
        self.drain()

    # -- events ---------------------------------------------------------------------------------

    def _started(self, run: Run, attempt: int) -> float:
        """Log and announce an attempt; its start time, or 0.0 when nobody watches."""
        debug = logger.isEnabledFor(logging.DEBUG)
        events = self.events
        if not debug and not events.observers and not self.errors.observers:
            return 0.0
        name = run.node.step.name
        if debug:
            logger.debug("start %s (live store %d, revision %d)", name, self.id, run.revision)
        if events.observers:
            events.emit(StepEvent(name, "started", None, None, self.id, attempt, run.revision))
        return time.perf_counter()

    def _report(
        self,
        run: Run,
        kind: EventKind,
        start: float,
        attempt: int,
        error: Exception | None = None,
    ) -> None:
        failed = kind == "failed"
        events, errors = self.events, self.errors
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s (revision %d)", kind, run.node.step.name, run.revision)
        if not events.observers and not (failed and errors.observers):
            return
        elapsed = time.perf_counter() - start if start else None
        event = StepEvent(run.node.step.name, kind, elapsed, error, self.id, attempt, run.revision)
        if events.observers:
            events.emit(event)
        if failed and errors.observers:
            errors.emit(event)
