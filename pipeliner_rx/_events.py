"""StepEvent and the pipeline's stream of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from reactivex import Observable, abc
from reactivex.subject import Subject

from ._threads import guarded

__all__ = ["EventKind", "Events", "StepEvent"]

EventKind = Literal["started", "succeeded", "failed", "skipped", "cancelled"]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Something that happened to a step in one store.

    Attributes:
        step: the step's name.
        kind: ``"started"``, ``"succeeded"``, ``"failed"``, ``"skipped"`` (its outputs were
            present, so it did not run) or ``"cancelled"`` (nobody needed it any more).
        elapsed: seconds since the attempt started, for ``succeeded``, ``failed`` and
            ``cancelled``; None otherwise.
        error: the exception, for ``failed``; None otherwise.
        scope: the id of the store: 0 for the pipeline's own store, a positive number per scope.
        attempt: the attempt this event belongs to, counting from 1 (see ``retries``).
        revision: in a live store (`Pipeline.live`), the revision whose inputs the run was
            given; None outside live stores. ``scope`` is then the live store's id.
    """

    step: str
    kind: EventKind
    elapsed: float | None = None
    error: BaseException | None = None
    scope: int = 0
    attempt: int = 1
    revision: int | None = None


class Events:
    """The pipeline's event stream; emitting costs one list check while nobody listens."""

    __slots__ = ("_subject", "observable", "observers")

    def __init__(self) -> None:
        self._subject: Subject[StepEvent] = Subject()
        subject = self._subject
        # The subject's own list (subscribing and disposing change it in place): a check of it
        # is the whole cost of events nobody listens to.
        self.observers = subject.observers

        def subscribe(
            observer: abc.ObserverBase[StepEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            # A subscriber that raises must not break the step that emitted the event, nor
            # keep the event from the other subscribers.
            def on_next(event: StepEvent) -> None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                guarded(loop, observer.on_next, event)

            return subject.subscribe(on_next, observer.on_error, observer.on_completed)

        # Callers get an Observable, not the Subject itself: they listen, they do not emit.
        self.observable: Observable[StepEvent] = Observable(subscribe)

    def emit(self, event: StepEvent) -> None:
        """Send ``event`` to every subscriber."""
        self._subject.on_next(event)

    def complete(self) -> None:
        """End the stream: every subscriber gets ``on_completed`` (a live store's, at close)."""
        self._subject.on_completed()
