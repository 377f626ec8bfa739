"""The stream side of a pipeline: observe, feed, compute, map and the events stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from reactivex import Observable, abc

from ._compute import compute
from ._events import StepEvent
from ._map import Results, Source, map_items
from ._rx import feed, observe

if TYPE_CHECKING:
    from ._engine import Engine
    from ._pipeline import Pipeline
    from ._step import Step

__all__ = ["PipelineStreams"]


class PipelineStreams:
    """The methods of `Pipeline` that bridge to Rx streams and async iterators."""

    __slots__ = ()
    _engine: Engine  # set by `Pipeline`

    def observe(self, name: str) -> Observable[Any]:
        """An Observable that emits resource ``name`` once and completes.

        It is lazy: subscribing demands the provider chain of the current store (the scope the
        call is made in); inputs that nothing provides are awaited until they are pushed. It
        errors with the exception of a failed step. Disposing the subscription before the value
        arrives withdraws the demand, which cancels steps nobody else needs. Emissions happen on
        the event loop. ``await pipeline.observe(name)`` gives the value.

        Args:
            name: the resource.

        Returns:
            A cold Observable of the resource's value.

        Example:
            >>> pipeline.observe("result").pipe(ops.map(str)).subscribe(print)
        """
        return observe(self._engine, self._engine.current_store(), name)

    def feed(self, name: str, observable: Observable[Any]) -> abc.DisposableBase:
        """Make the first item of ``observable`` the resource ``name`` of the current store.

        Later items are ignored; an error of ``observable`` before its first item fails the
        resource (its waiters get the error; a later push or feed can still set it). Items may
        arrive on any thread: they are handed to the event loop's thread.

        Args:
            name: the resource.
            observable: the source of its value.

        Returns:
            A disposable that stops listening to ``observable``.

        Example:
            >>> pipeline.feed("divisor", clicks.pipe(ops.map(lambda e: e.value)))
        """
        return feed(self._engine.current_store(), name, observable)

    def compute(
        self,
        *targets: str | Step[Any],
        max_concurrency: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> Callable[[Observable[Any]], Observable[Any]]:
        """An Rx operator computing ``targets`` for each item of a stream of inputs.

        Each item is a mapping of resource names to values. For each, a fresh scope seeded with
        it (and the pipeline's environment) computes the targets, and the operator emits the
        value, or a tuple for several targets. At most ``max_concurrency`` items are in flight
        (started and not yet emitted); further items wait in a queue, since an Rx source cannot
        be slowed down: for back-pressure, iterate with `map` instead.

        - ``ordered=True`` emits results in input order: a slow item holds back the finished
          ones after it. ``ordered=False`` emits each result as soon as it is ready.
        - ``return_exceptions=False``: a failing item ends the stream with ``on_error`` (the
          Rx convention; the results of the items before it in emission order are emitted).
          ``return_exceptions=True`` emits the failing item's exception in its place and goes
          on (the `asyncio.gather` convention). Use it for streams that must survive bad
          items; filter or count the errors downstream.
        - An item whose task is cancelled by anything but the stream fails with
          `PipelineError` (then as any failing item above).

        Subscribing, items and disposal may come on any thread (``concat_map`` or
        ``flat_map`` over a source on a worker thread): the work is handed to the event loop
        the operator was created on, or the running one, or the one the pipeline is bound to.
        Notifications are emitted on that loop's thread.

        Args:
            *targets: resource names or steps to compute per item. A string is a resource a
                step provides, else a step's name, else an input of a step (that the items
                supply).
            max_concurrency: the most items in flight at once; None for no limit.
            ordered: emit in input order (True) or in completion order (False).
            return_exceptions: emit a failing item's exception as its result instead of
                ending the stream.

        Returns:
            An operator for ``source.pipe(...)``.

        Raises:
            TypeError: no targets, a target that is neither a string nor a step, or a step of
                another pipeline.
            UnknownTargetError: a string target names nothing in this pipeline.
            ValueError: ``max_concurrency`` is not a whole number >= 1.
            PipelineError: on subscription (through ``on_error``), when there is no event loop
                to run on.

        Example:
            >>> inputs.pipe(pipeline.compute("double", ordered=False, return_exceptions=True))
        """
        return compute(
            cast("Pipeline", self),  # this class is only ever a base of `Pipeline`
            self._engine.current_store(),
            targets,
            max_concurrency,
            ordered,
            return_exceptions,
        )

    def map(
        self,
        items: Source,
        *targets: str | Step[Any],
        max_concurrency: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> Results:
        """Compute ``targets`` for each of ``items``, as an async iterator of the results.

        Each item is computed as by `compute`: in a fresh scope seeded with it, the value or a
        tuple for several targets. Items are pulled from ``items`` (an iterable or async
        iterable of mappings) only while fewer than ``max_concurrency`` of them are ahead of
        the consumer (pulled, not yet handed out), so a slow consumer slows the source and an
        endless source is read with bounded memory. A plain iterable is read on the event
        loop: it must not block (wrap a blocking source in an async generator).

        ``ordered`` and ``return_exceptions`` are those of `compute`: with
        ``return_exceptions=False`` the first failing item (in output order) raises its
        exception from the ``async for``, after the results before it. An error of the source
        itself is raised after the results of the items read before it.

        Leaving the ``async for`` early cancels the items in flight (at the loop's next turn);
        ``aclose()``, e.g. through ``contextlib.aclosing``, also waits until they are gone.

        Args:
            items: the inputs, one mapping of resource names to values per item.
            *targets: resource names or steps to compute per item, as for `compute`.
            max_concurrency: the most items ahead of the consumer, and so in flight at once;
                None for 100.
            ordered: results in input order (True) or in completion order (False).
            return_exceptions: give a failing item's exception as its result instead of
                raising it.

        Returns:
            An async iterator (an async generator) of the results.

        Raises:
            TypeError: ``items`` is not an iterable of mappings, or a bad target (see
                `compute`).
            UnknownTargetError: a string target names nothing in this pipeline.
            ValueError: ``max_concurrency`` is not a whole number >= 1.

        Example:
            >>> async for count in pipeline.map(({"text": line} async for line in lines), "count"):
            ...     print(count)
        """
        return map_items(
            cast("Pipeline", self),
            self._engine.current_store(),
            items,
            targets,
            max_concurrency,
            ordered,
            return_exceptions,
        )

    @property
    def events(self) -> Observable[StepEvent]:
        """An Observable of `StepEvent`: each step started, succeeded, failed, skipped, cancelled.

        Events come from every store of the pipeline (``StepEvent.scope`` tells which). Without
        subscribers no event is even built.
        """
        return self._engine.events.observable
