"""The revision scheduler of a live store: demand, dirtiness, and settling in data-flow order.

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._cells import CLEAN, DIRTY, IDLE, Cell, Node, Outcome, Run
from ._events import Events
from ._executors import Executor
from ._liverun import Runner
from ._store import same
from .exceptions import CycleError, StepOutputError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Scheduler"]


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
        self.runner = Runner(events, errors, executor, store_id, self._finish)
        self.revision = 0  # the latest applied revision
        self.loop: asyncio.AbstractEventLoop | None = None
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
            recount += cell.consumers  # they now wait for the provider, whatever its state
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

    def _refresh(self, marks: Sequence[Node], recount: Sequence[Node]) -> None:
        """Mark ``marks`` and the needed steps below them dirty, count their pending inputs,
        and evaluate what is ready.

        Counts change only along the edges out of steps that turn dirty here, so only those
        are counted; ``recount`` names the dirty steps whose counts are made afresh instead
        (newly needed steps, and consumers of a cell whose pin changed).
        """
        newly: list[Node] = []
        stack = list(marks)
        while stack:
            node = stack.pop()
            if node.state != CLEAN:
                continue  # not needed, or dirty already, and so is everything needed below it
            node.state = DIRTY
            node.waiting = 0
            newly.append(node)
            for cell in node.outputs:
                if not cell.pinned:
                    stack += cell.consumers
        for node in newly:
            for cell in node.outputs:
                if not cell.pinned:
                    for consumer in cell.consumers:
                        if consumer.state == DIRTY:
                            consumer.waiting += 1
        for node in recount:
            if node.state == DIRTY:
                waiting = 0
                for cell in node.inputs:
                    provider = cell.provider
                    if provider is not None and provider.state == DIRTY and not cell.pinned:
                        waiting += 1
                node.waiting = waiting
        ready = self.ready
        for nodes in (newly, marks, recount):
            for node in nodes:
                if node.state == DIRTY and not node.waiting and not node.queued:
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
            self._apply(node, held)
            return
        inputs = node.inputs
        stamps = [cell.stamp for cell in inputs]
        if stamps == node.seen:
            self._settle(node, ())  # nothing it reads changed since it last ran
            return
        kwargs: dict[str, Any] = {}
        error: BaseException | None = None
        for cell, param in zip(inputs, node.params, strict=True):
            if cell.error is None:
                if cell.has_value:
                    kwargs[cell.name] = cell.value
                elif param.has_default:
                    kwargs[cell.name] = param.default
                else:
                    return  # an input that nothing provides has not been pushed: wait for it
            elif error is None:
                error = cell.error
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
        self.runner.start(loop, run, kwargs)

    def _apply(self, node: Node, outcome: Outcome) -> None:
        """A run's outcome becomes the step's outputs; equal values keep their stamps."""
        node.seen = outcome.run.stamps
        outputs = node.outputs
        value, error = outcome.value, outcome.error
        revision = self.revision
        values: Sequence[Any] = ()
        if error is None:
            if len(outputs) == 1:
                self.runner.ended(outcome, "succeeded")
                cell = outputs[0]
                if cell.pinned or (
                    cell.has_value and cell.error is None and same(cell.value, value)
                ):
                    self.cutoffs += 1
                    self._settle(node, ())
                    return
                if not (cell.has_value and same(cell.value, value)):
                    cell.value = value
                    cell.has_value = True
                    cell.value_stamp = revision
                cell.error = None
                cell.stamp = revision
                self._settle(node, (cell,))
                return
            if isinstance(value, (tuple, list)) and len(value) == len(outputs):
                values = value
            else:
                error = outcome.error = StepOutputError(node.step.name, node.step.provides, value)
        changed = []
        if error is None:
            self.runner.ended(outcome, "succeeded")
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
            self.runner.ended(outcome, "failed")
            for cell in outputs:
                if not cell.pinned:
                    cell.error = error
                    cell.stamp = revision
                    changed.append(cell)
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
        held = node.held
        if held is not None:
            node.held = None
            self.cancelled_runs += 1
            self.runner.ended(held, "cancelled")

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

    def _finish(self, outcome: Outcome) -> None:
        """A run ended (not by the store's cancellation): apply it, or hold it back."""
        run = outcome.run
        node = run.node
        if node.run is not run:
            # Cancelled, but the step swallowed the cancellation: the result is stale.
            self.runner.ended(outcome, "cancelled")
            return
        node.run = None
        if node.waiting:
            # A step above it is dirty again: the result stands only if that step's outputs
            # come out unchanged (otherwise `_stale` drops it).
            node.held = outcome
            return
        self._apply(node, outcome)
        self.drain()
