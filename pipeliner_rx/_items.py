"""Items of a stream: each computed in a fresh scope, and the items in flight, handed out in order.

`compute` (an Rx operator) and `Pipeline.map` (an async iterator) differ only in how items come
in and results go out; both run every item through `Targets.compute` and keep the items in
flight in an `Items` window.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._format import short_repr
from ._scope import compute_in
from ._step import Step
from .exceptions import PipelineError, UnknownTargetError

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._store import Store

__all__ = ["Items", "Outcome", "Targets", "check_limit"]


def check_limit(max_concurrency: int | None) -> int | None:
    """``max_concurrency`` checked: a whole number >= 1, or None."""
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError(
            f"`max_concurrency` must be a whole number >= 1, or None; got "
            f"{short_repr(max_concurrency)}."
        )
    return max_concurrency


def _describe(pipeline: Pipeline) -> str:
    from ._api import default_pipeline  # late: _api builds a Pipeline, which imports this

    where = "the default pipeline " if pipeline is default_pipeline() else ""
    return f"{where}{pipeline!r} at {id(pipeline):#x}"


class Targets:
    """What each item computes: resource names and steps, resolved once against the pipeline.

    A string is, in this order: a resource some step provides, the name of a step (called like
    the step), a resource some step needs or the store holds (an input the items supply).
    """

    __slots__ = ("pipeline", "single", "targets", "where")

    def __init__(
        self, pipeline: Pipeline, targets: Sequence[str | Step[Any]], store: Store, where: str
    ) -> None:
        if not targets:
            raise TypeError(f"`{where}` needs at least one target: a resource name or a step.")
        steps = pipeline.steps
        provided = {name for step in steps for name in step.provides}
        needed = {param.name for step in steps for param in step.params}
        by_name = {step.name: step for step in steps}
        resolved: list[str | Step[Any]] = []
        for target in targets:
            if isinstance(target, Step):
                if target.pipeline is not pipeline:
                    raise TypeError(
                        f"`{where}` was given the step `{target.name}` of another pipeline "
                        f"({_describe(target.pipeline)}), not of this one "
                        f"({_describe(pipeline)}). Call `{where}` on the step's own pipeline, "
                        f"or register `{target.name}` on this one."
                    )
                resolved.append(target)
            elif not isinstance(target, str):
                raise TypeError(
                    f"A target of `{where}` is a resource name or a step; got {short_repr(target)}."
                )
            elif target in provided:
                resolved.append(target)
            elif target in by_name:
                resolved.append(by_name[target])
            elif target in needed or store.present(target):
                resolved.append(target)
            else:
                raise UnknownTargetError(target, list(by_name))
        self.pipeline = pipeline
        self.targets = tuple(resolved)
        self.single = len(resolved) == 1
        self.where = where

    async def compute(self, item: Mapping[str, Any]) -> Any:
        """The targets' values for one item, in a fresh scope seeded with it (a tuple for many)."""
        if not isinstance(item, Mapping):
            raise TypeError(
                f"Each item of `{self.where}` must be a mapping of resource names to values; "
                f"got {short_repr(item)}. Map items to dicts first, e.g. `{{'x': item}}`."
            )
        async with self.pipeline.scope(**item) as scope:
            if self.single:
                return await compute_in(scope, self.targets[0])
            # Tasks of its own per target, so that every target's demand is made at once; on a
            # failure the others are cancelled and awaited before the scope closes.
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(compute_in(scope, target)) for target in self.targets]
            try:
                return tuple(await asyncio.gather(*tasks))
            finally:
                pending = [task for task in tasks if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished item: its position in the input, and its value or its error."""

    index: int
    value: Any
    error: Exception | None


def _outcome(index: int, task: asyncio.Task[Any]) -> Outcome:
    if task.cancelled():
        # Not by the stream (which stops listening before it cancels): by someone holding the
        # task, or the loop shutting down. The item failed; its consumer must hear of it.
        error: Exception = PipelineError(
            f"Item {index} of the stream was cancelled from outside (its task was cancelled), "
            f"so it has no result. Stop the stream instead (dispose the subscription, or leave "
            f"the `async for`)."
        )
        return Outcome(index, None, error)
    exc = task.exception()
    if exc is None:
        return Outcome(index, task.result(), None)
    if not isinstance(exc, Exception):  # e.g. SystemExit raised by a step: not a value to emit
        error = PipelineError(f"Item {index} of the stream raised {short_repr(exc)}.")
        error.__cause__ = exc
        return Outcome(index, None, error)
    return Outcome(index, None, exc)


class Items:
    """The items in flight: each computed by a task of its own, handed out by `take`.

    ``ordered``: `take` gives items in input order (a finished item waits for those before
    it); otherwise in completion order. An item is in flight from `start` until it is taken.
    Used on the event loop's thread only; ``on_done`` is called there when an item finishes.
    """

    __slots__ = (
        "_context",
        "_finished",
        "_loop",
        "_on_done",
        "_ordered",
        "_started",
        "_targets",
        "_tasks",
        "closed",
        "count",
        "in_flight",
    )

    def __init__(
        self,
        targets: Targets,
        loop: asyncio.AbstractEventLoop,
        ordered: bool,
        context: contextvars.Context,
        on_done: Callable[[], None],
    ) -> None:
        self._targets = targets
        self._loop = loop
        self._ordered = ordered
        # Every item's task starts from the context of whoever started the stream (its scope,
        # if any), whichever thread the item arrived on.
        self._context = context
        self._on_done = on_done
        self._started: deque[tuple[int, asyncio.Task[Any]]] = deque()  # ordered: input order
        self._finished: deque[Outcome] = deque()  # unordered: completion order
        self._tasks: set[asyncio.Task[Any]] = set()  # not finished yet
        self.closed = False
        self.count = 0  # items started so far
        self.in_flight = 0  # started and not yet taken

    def start(self, item: Mapping[str, Any]) -> None:
        """Start computing ``item`` (nothing once closed: an item may race the close)."""
        if self.closed:
            return
        index = self.count
        self.count += 1
        self.in_flight += 1
        task = self._loop.create_task(self._targets.compute(item), context=self._context.copy())
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, index))
        if self._ordered:
            self._started.append((index, task))

    def _done(self, index: int, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an item the stream stopped before taking is no leak
        if self.closed:
            return
        if not self._ordered:
            self._finished.append(_outcome(index, task))
        self._on_done()

    def take(self) -> Outcome | None:
        """The next item to hand out, if it has finished; None otherwise."""
        if self._ordered:
            if not self._started or not self._started[0][1].done():
                return None
            index, task = self._started.popleft()
            outcome = _outcome(index, task)
        else:
            if not self._finished:
                return None
            outcome = self._finished.popleft()
        self.in_flight -= 1
        return outcome

    def close(self) -> list[asyncio.Task[Any]]:
        """Stop: cancel every unfinished item; return their tasks (they end at their next turn)."""
        self.closed = True
        tasks = list(self._tasks)
        self._tasks.clear()
        self._started.clear()
        self._finished.clear()
        for task in tasks:
            if not task.get_loop().is_closed():
                task.cancel()
        return tasks
