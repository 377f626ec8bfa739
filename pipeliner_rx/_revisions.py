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

This module applies revisions to the cells (where step 1 starts) and keeps track of demand (which
steps are needed); the `Settler` of `_live_settle` does the marking, evaluating and cancelling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._cells import DIRTY, IDLE, Cell, Node
from ._events import Events
from ._executors import Executor
from ._live_settle import Settler
from .exceptions import CycleError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Scheduler"]


class Scheduler:
    """The cells and steps of one live store, and the work that brings them up to date.

    All of it runs on the store's event loop thread; the `LiveStore` hands work over. The
    `settler` evaluates and runs the steps that a revision or new demand makes dirty.
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
        nodes: list[Node] = []
        self.settler = Settler(nodes, events, errors, executor, store_id)
        self.closed = False  # set by `close`: the store is closed
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
            nodes.append(node)
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

    @property
    def revision(self) -> int:
        """The latest applied revision."""
        return self.settler.revision

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
        settler = self.settler
        settler.revision = revision
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
            settler.cancel(provider)
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
            if cell.write(value, revision):
                changed.append(cell)
        for name in invalidated:
            anything = True
            cell = self.cell(name)
            provider = cell.provider
            if provider is not None and not cell.pinned:
                provider.seen = None
                settler.cancel(provider)
                marks.append(provider)
            else:  # an input: its consumers rerun, as if it had changed
                cell.stamp = revision
                changed.append(cell)
        for cell in changed:
            settler.stale(cell)
            marks += cell.consumers
        settler.refresh(marks, recount)
        for cell in dict.fromkeys([*changed, *pinned]):
            if cell.watchers:
                settler.notify(cell)
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
            self.settler.refresh((), self._need(provider))

    def withdraw(self, cell: Cell) -> None:
        """Undo one `demand`; steps nothing needs any more are cancelled. After `close`, a
        no-op: closing cancelled every run already."""
        if self.closed:
            return
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
            self.settler.cancel(current)
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

    # -- the loop and closing -------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the steps run on; None until the store is used on one."""
        return self.settler.loop

    def adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Work on ``loop`` from now on; runs of the previous (stopped) loop start afresh."""
        self.settler.adopt(loop)

    def drain(self) -> None:
        """Evaluate every dirty step whose inputs have settled, in data-flow order."""
        self.settler.drain()

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel every run; return the tasks still to finish. Demand is withdrawn no more."""
        self.closed = True
        return self.settler.close()
