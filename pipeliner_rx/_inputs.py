"""Inputs: a step's observation of its input subjects, as ``combine_latest`` + ``first``.

An activation observes each input subject that holds no value yet, counting completions
instead of building an operator chain. Once every input holds a value it reads them from the
subjects (`_ready`); the first error, or a completion without a value, stops it (`_lost`).
A completion without a value stops it at once, as RxJS's ``combineLatest`` does: reactivex's
``combine_latest`` would wait for the other inputs, though the step can no longer run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reactivex import abc
from reactivex.internal.exceptions import SequenceContainsNoElementsError

from ._store import Resource, is_present

__all__ = ["Inputs"]


class Inputs(abc.ObserverBase[Any]):
    """The observer of a step's input subjects; subclasses say what `_ready` and `_lost` do."""

    __slots__ = ("due", "remaining", "sources", "waiting")

    def __init__(self) -> None:
        # The input subjects listened to until every one completes; None when not listening.
        self.waiting: list[Resource] | None = None
        self.sources: Sequence[Resource] = ()  # every input subject, in input order
        self.remaining = 0  # completions still due from `waiting`
        self.due = 0  # values still due (a completion without one is an error)

    def _ready(self) -> None:
        """Every subject of `sources` holds a value."""
        raise NotImplementedError

    def _lost(self, error: Exception) -> None:
        """An input failed, or completed without a value."""
        raise NotImplementedError

    def listen_to(self, subjects: list[Resource]) -> None:
        """Observe ``subjects``; `_ready` runs once every one holds a value."""
        self.sources = subjects
        waiting = [subject for subject in subjects if not is_present(subject)]
        if waiting:
            self._listen(waiting)
        else:
            self._ready()

    def _listen(self, waiting: list[Resource]) -> None:
        self.waiting = waiting
        self.remaining = self.due = len(waiting)
        for subject in waiting:
            subject.listen(self)  # a failed input calls back at once: stop there
            if self.waiting is None:
                return

    def on_next(self, value: Any) -> None:
        """An input's value: read from its subject once all are there."""
        if self.waiting is not None:
            self.due -= 1

    def on_completed(self) -> None:
        """An input completed: the step is ready when it was the last one."""
        if self.waiting is None:
            return
        self.remaining -= 1
        if self.due > self.remaining:  # completed without a value, as `first()` would refuse
            self._lost(SequenceContainsNoElementsError())
        elif self.remaining == 0:
            self.waiting = None  # completed subjects let go of their observers themselves
            self._ready()

    def on_error(self, error: Exception) -> None:
        """An input failed (see `_lost`)."""
        if self.waiting is not None:
            self._lost(error)

    def _stop_listening(self) -> None:
        """Detach from the subjects still listened to (cancelled, or failed)."""
        waiting, self.waiting = self.waiting, None
        self.sources = ()
        if waiting:
            for subject in waiting:
                subject.detach(self)
