"""Settling a live store's dirty steps in data-flow order: evaluate, run, apply or drop results.

The `Scheduler` (in `_revisions`) applies revisions to the cells and keeps track of which steps
are needed; the `Settler` marks the needed steps below a change dirty and brings them up to date:
it evaluates each one whose inputs have settled, starts a run when an input changed, applies the
outcome (an output equal to its previous value keeps its stamp: the cutoff), and cancels runs
whose inputs changed meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from ._cells import CLEAN, DIRTY, IDLE, Cell, Node, Outcome, Run
from ._events import Events
from ._executors import Executor
from ._liverun import Runner
from ._store import same
from .exceptions import StepOutputError

__all__ = ["Settler"]


class Settler:
    """Evaluates the dirty steps of one live store, runs them, and settles their outputs.

    All of it runs on the store's event loop thread.

    Args:
        nodes: the store's steps that provide something.
        events: the pipeline's event stream.
        errors: the store's own stream of ``failed`` events.
        executor: where plain ``def`` steps run unless a step names its own.
        store_id: the live store's id.
    """

    def __init__(
        self,
        nodes: list[Node],
        events: Events,
        errors: Events,
        executor: Executor,
        store_id: int,
    ) -> None:
        self.nodes = nodes
        self.runner = Runner(events, errors, executor, store_id, self._finish)
        self.revision = 0  # the latest applied revision
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready: deque[Node] = deque()
        self.draining = False
        self.step_runs = 0
        self.cancelled_runs = 0
        self.cutoffs = 0

    def refresh(self, marks: Sequence[Node], recount: Sequence[Node]) -> None:
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
                if cell.write(new, revision):
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
            self.stale(cell)
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
                self.notify(cell)

    def stale(self, cell: Cell) -> None:
        """``cell`` changed: runs that read its previous value are stale. Cancel them."""
        for consumer in cell.consumers:
            if consumer.run is not None or consumer.held is not None:
                self.cancel(consumer)

    def notify(self, cell: Cell) -> None:
        """Tell the watchers of ``cell`` that it settled."""
        for watcher in list(cell.watchers):  # a watcher may unsubscribe while being told
            watcher.update(cell)

    def cancel(self, node: Node) -> None:
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
            self.cancel(node)
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
            # come out unchanged (otherwise `stale` drops it).
            node.held = outcome
            return
        self._apply(node, outcome)
        self.drain()
