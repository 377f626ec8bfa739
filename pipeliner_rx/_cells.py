"""The data of a live store: a `Cell` per resource, a `Node` per providing step, and runs.

Plain records with slots, and `Cell.write`, the one rule for giving a cell a new value;
`_revisions.Scheduler` and `_live_settle.Settler` own the rules that change them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from ._store import same

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["CLEAN", "DIRTY", "IDLE", "Cell", "Node", "Outcome", "Run", "Watcher"]

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
        self.error: BaseException | None = None
        self.stamp = 0  # the revision that last changed the value or the error
        self.value_stamp = 0  # the revision that last changed the value (what observers see)
        self.demand = 0  # observers, gets and needed consumers
        self.watchers: list[Watcher] = []

    @property
    def settled(self) -> bool:
        """Whether the cell is consistent with the latest applied revision."""
        provider = self.provider
        return provider is None or self.pinned or provider.state == CLEAN

    def write(self, value: Any, revision: int) -> bool:
        """Set ``value`` in ``revision``, clearing any error; whether the cell changed.

        An equal value (``==``) keeps its value stamp: observers do not hear it again.
        """
        equal = self.has_value and same(self.value, value)
        if equal and self.error is None:
            return False
        if not equal:
            self.value = value
            self.has_value = True
            self.value_stamp = revision
        self.error = None
        self.stamp = revision
        return True


class Node:
    """A step that provides something, and where it stands in the current revision."""

    __slots__ = (
        "held",
        "inputs",
        "need",
        "outputs",
        "params",
        "queued",
        "run",
        "seen",
        "state",
        "step",
        "waiting",
    )

    def __init__(self, step: Step[Any], inputs: list[Cell], outputs: list[Cell]) -> None:
        self.step = step
        self.params = step.params
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
    """How a run ended, kept until it is applied (or dropped): its value or error, and what
    its events report."""

    __slots__ = ("attempt", "elapsed", "error", "run", "value")

    def __init__(
        self,
        run: Run,
        value: Any,
        error: BaseException | None,
        elapsed: float | None,
        attempt: int,
    ) -> None:
        self.run = run
        self.value = value
        self.error = error
        self.elapsed = elapsed
        self.attempt = attempt
