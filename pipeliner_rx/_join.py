"""A lean join of single-value sources: ``combine_latest(*sources).pipe(first())`` in O(1) per item.

reactivex's ``combine_latest`` checks every input on each emission (quadratic for wide joins) and
an operator chain costs a subscription per operator. A step needs only "all inputs have a value,
once", so one counter and one slot observer per input do the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reactivex import Observable, abc
from reactivex.internal.exceptions import SequenceContainsNoElementsError

from ._store import Resource

__all__ = ["Join", "One", "Slot"]

_UNSET: Any = object()


class Slot(abc.ObserverBase[Any], abc.DisposableBase):
    """The observer a `Join` attaches to one of its sources."""

    __slots__ = ("_index", "_join", "_source")

    def __init__(self, join: Join, index: int, source: Resource | None = None) -> None:
        self._join = join
        self._index = index
        self._source = source  # a resource it listens to, and detaches from itself

    @property
    def owner(self) -> Any:
        """What the join is for (a step's activation), or None."""
        return self._join.owner

    @property
    def index(self) -> int:
        """The position of its source among the join's sources."""
        return self._index

    def dispose(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.detach(self)

    def on_next(self, value: Any) -> None:
        self._join._set(self._index, value)

    def on_error(self, error: Exception) -> None:
        self._join._fail(error, self._index)

    def on_completed(self) -> None:
        join = self._join
        if join._values[self._index] is _UNSET:
            join._fail(SequenceContainsNoElementsError(), self._index)


class Join:
    """Subscribes to each source and calls back once all of them have a value, or on an error.

    ``on_ready(values)`` receives the latest value of each source, in source order, as soon as
    every source has one;
    ``on_error(error, index)`` the first error and the index of the source that sent it. At most
    one of them is called, once. `dispose` withdraws the subscriptions. Sources that already
    hold a value (a completed ``AsyncSubject``) call back synchronously. ``owner`` is what the
    join is for (a step's activation), so that a failure can find who depends on a source.
    """

    __slots__ = (
        "_on_error",
        "_on_ready",
        "_remaining",
        "_subscriptions",
        "_values",
        "done",
        "owner",
    )

    def __init__(
        self,
        sources: Sequence[Observable[Any]],
        on_ready: Callable[[list[Any]], None],
        on_error: Callable[[Exception, int], None],
        owner: Any = None,
    ) -> None:
        self.owner = owner
        self._values: list[Any] = [_UNSET] * len(sources)
        self._remaining = len(sources)
        self._on_ready = on_ready
        self._on_error = on_error
        self._subscriptions: list[abc.DisposableBase] = []
        self.done = False
        if not sources:
            self.done = True
            on_ready([])
            return
        values = self._values
        for index, source in enumerate(sources):
            if isinstance(source, Resource):
                if source.is_stopped and source.has_value:
                    # Present already: take the value, no subscription needed.
                    values[index] = source.value
                    self._remaining -= 1
                    if self._remaining == 0:
                        self.dispose()
                        on_ready(values)
                        return
                    continue
                slot = Slot(self, index, source)
                if source.listen(slot):
                    self._subscriptions.append(slot)
                elif self.done:
                    break
                continue
            subscription = source.subscribe(Slot(self, index))
            if self.done:
                # Called back during subscribe: the first value is all we take.
                subscription.dispose()
                break
            self._subscriptions.append(subscription)

    def _set(self, index: int, value: Any) -> None:
        if self.done:
            return
        values = self._values
        if values[index] is _UNSET:
            self._remaining -= 1
        values[index] = value  # the latest value counts, as in combine_latest
        if self._remaining == 0:
            # Like `first()`: a source that goes on emitting is not listened to any more.
            self.dispose()
            self._on_ready(self._values)

    def _fail(self, error: Exception, index: int) -> None:
        if self.done:
            return
        self.dispose()
        self._on_error(error, index)

    def dispose(self) -> None:
        """Withdraw every subscription; no callback is called afterwards."""
        self.done = True
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.dispose()


class One(abc.ObserverBase[Any], abc.DisposableBase):
    """A `Join` of a single resource: the same callbacks and ``done``, without slots or lists.

    A caller usually waits for one resource (a step's only output, or a step's private
    result): this observes it directly.
    """

    __slots__ = ("_on_error", "_on_ready", "_source", "done")

    def __init__(
        self,
        source: Resource,
        on_ready: Callable[[list[Any]], None],
        on_error: Callable[[Exception, int], None],
    ) -> None:
        self._on_ready = on_ready
        self._on_error = on_error
        self._source: Resource | None = None
        self.done = False
        if source.is_stopped and source.has_value:
            self.done = True
            on_ready([source.value])
            return
        self._source = source
        source.listen(self)  # a failed source calls back at once

    def on_next(self, value: Any) -> None:
        pass  # read from the source on completion, as `first()` of an AsyncSubject would

    def on_completed(self) -> None:
        if self.done:
            return
        source = self._source
        self.done = True
        self._source = None
        if source is not None and source.has_value:
            self._on_ready([source.value])
        else:
            self._on_error(SequenceContainsNoElementsError(), 0)

    def on_error(self, error: Exception) -> None:
        if self.done:
            return
        self.done = True
        self._source = None
        self._on_error(error, 0)

    def dispose(self) -> None:
        """Stop listening; no callback is called afterwards."""
        self.done = True
        source, self._source = self._source, None
        if source is not None:
            source.detach(self)
