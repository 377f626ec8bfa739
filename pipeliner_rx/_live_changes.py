"""The pending revision of a live store: coalescing pushes, unpins and invalidations.

Changes made in the same loop iteration merge into one revision, handed to the `Scheduler` on
the next iteration.
"""

from __future__ import annotations

from typing import Any

from ._cells import Cell
from ._live_readers import Readers
from ._revisions import Scheduler
from ._store import same
from .exceptions import CycleError, UnknownTargetError

__all__ = ["Changes"]


class Changes:
    """The revisions of one live store: the latest, and what is pending for it.

    Each change checks its names, merges into the pending revision, and returns the revision
    that includes it; a change that changes nothing makes no revision. The pending revision is
    applied on the next iteration of the scheduler's loop, and the readers are told.
    """

    __slots__ = (
        "invalid",
        "pending",
        "readers",
        "revision",
        "revisions",
        "scheduler",
        "unpins",
        "values",
    )

    def __init__(self, scheduler: Scheduler, readers: Readers) -> None:
        self.scheduler = scheduler
        self.readers = readers
        self.revision = 1  # the latest: the one the latest change made
        self.revisions = 0  # applied revisions that changed something
        # The pending revision: pushes, unpins and invalidations made since the last flush.
        self.values: dict[str, Any] = {}
        self.unpins: set[str] = set()
        self.invalid: set[str] = set()
        self.pending = False

    def push(self, values: dict[str, Any]) -> int:
        """Merge pushed values (equal ones change nothing)."""
        cells = self.scheduler.cells
        pending, unpins = self.values, self.unpins
        fresh = {}
        for name, value in values.items():
            if name in pending:
                if same(pending[name], value):
                    continue
            elif name not in unpins:
                cell = cells.get(name)
                if (
                    cell is not None
                    and (cell.pinned or cell.provider is None)
                    and cell.has_value
                    and cell.error is None
                    and same(cell.value, value)
                ):
                    continue
            fresh[name] = value
        if not fresh:
            return self.revision
        for name, value in fresh.items():
            pending[name] = value
            unpins.discard(name)
        return self._change()

    def unpin(self, names: tuple[str, ...]) -> int:
        """Merge unpins (of names not pinned, nor about to be, they change nothing)."""
        scheduler = self.scheduler
        for name in names:
            cell = self.cell(name)
            if cell.provider is None:
                raise ValueError(
                    f"`{name}` is an input: no step provides it, so there is no provider to "
                    f"hand it back to. Push a new value instead (`push({name}=...)`)."
                )
        wanted = [
            name
            for name in dict.fromkeys(names)
            if name in self.values or (scheduler.cells[name].pinned and name not in self.unpins)
        ]
        if not wanted:
            return self.revision
        after = set(wanted)

        def pinned(cell: Cell) -> bool:  # as it will be once this revision is applied
            if cell.name in self.values and cell.name not in after:
                return True
            return cell.pinned and cell.name not in after and cell.name not in self.unpins

        for name in wanted:
            cell = scheduler.cells[name]
            provider = cell.provider
            if cell.demand and provider is not None:
                path = scheduler.cycle(provider, pinned, idle_only=False)
                if path is not None:
                    raise CycleError(path)
        for name in wanted:
            self.values.pop(name, None)
            if scheduler.cells[name].pinned:
                self.unpins.add(name)
        return self._change()

    def invalidate(self, names: tuple[str, ...]) -> int:
        """Merge invalidations."""
        for name in names:
            self.cell(name)
        if not names:
            return self.revision
        self.invalid.update(names)
        return self._change()

    def _change(self) -> int:
        """Something is pending: the next revision, flushed on the next loop iteration."""
        if not self.pending:
            self.pending = True
            self.revision += 1
            loop = self.scheduler.loop
            if loop is None:
                self.flush()  # no loop yet: nothing can be observed or running
            elif not loop.is_closed():
                loop.call_soon(self.flush)
            # A closed loop: flushed when the store is next used on a running loop.
        return self.revision

    def flush(self) -> None:
        """Apply the pending revision, if there is one and the store is open."""
        if not self.pending or self.scheduler.closed:
            return
        loop = self.scheduler.loop
        if loop is not None and loop.is_closed():
            return
        self.pending = False
        values, unpins, invalid = self.values, self.unpins, self.invalid
        self.values, self.unpins, self.invalid = {}, set(), set()
        if self.scheduler.apply(self.revision, values, unpins, invalid):
            self.revisions += 1
        self.readers.applied()

    def clear(self) -> None:
        """Drop the pending changes: the store closed."""
        self.values, self.unpins, self.invalid = {}, set(), set()

    def pinned(self, cell: Cell) -> bool:
        """Whether ``cell`` will be pinned once the pending revision is applied."""
        name = cell.name
        if name in self.values:
            return cell.provider is not None
        return cell.pinned and name not in self.unpins

    def cell(self, name: str) -> Cell:
        """The cell of resource ``name``.

        Raises:
            UnknownTargetError: ``name`` is not a resource of the pipeline (nor pending).
        """
        cells = self.scheduler.cells
        cell = cells.get(name)
        if cell is not None:
            return cell
        if name in self.values or name in self.invalid:
            return self.scheduler.cell(name)
        raise UnknownTargetError(name, sorted(cells))
