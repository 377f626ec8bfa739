"""map: an async iterator computing each item of an (async) iterable, pulled with back-pressure."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._format import short_repr
from ._items import Items, Targets, check_limit

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._step import Step
    from ._store import Store

__all__ = ["DEFAULT_WINDOW", "MapResults", "Results", "Source", "map_items"]

# Items pulled ahead of the consumer when `max_concurrency` is None: enough to keep a hundred
# requests or queries in flight, while an endless source is never read unboundedly.
DEFAULT_WINDOW = 100

# What `Pipeline.map` takes and returns, as users see it.
Source = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]
Results = AsyncGenerator[Any, None]


def map_items(
    pipeline: Pipeline,
    store: Store,
    items: Source,
    targets: Sequence[str | Step[Any]],
    max_concurrency: int | None,
    ordered: bool,
    return_exceptions: bool,
) -> MapResults:
    """The results of ``targets`` for each of ``items``; see `Pipeline.map`."""
    if isinstance(items, Mapping):
        raise TypeError(
            f"`map` takes an iterable of mappings, one per item; got a single mapping "
            f"{short_repr(items)}. Wrap it in a list: `map([item], ...)`."
        )
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(
            f"`map` takes an iterable or async iterable of mappings; got {short_repr(items)}."
        )
    limit = check_limit(max_concurrency)
    resolved = Targets(pipeline, targets, store, "map")
    return MapResults(resolved, items, limit or DEFAULT_WINDOW, ordered, return_exceptions)


class MapResults(AsyncGenerator[Any, None]):
    """The async iterator `Pipeline.map` returns; it behaves as an async generator would.

    Nothing is read from the source before the first ``__anext__``. Leaving the ``async for``
    (the iterator is dropped) cancels the items in flight at once; ``aclose()`` also waits
    until they have finished.
    """

    def __init__(
        self, targets: Targets, source: Source, limit: int, ordered: bool, return_exceptions: bool
    ) -> None:
        self._targets = targets
        self._source: Source | None = source
        self._limit = limit
        self._ordered = ordered
        self._return_exceptions = return_exceptions
        self._run: _Run | None = None
        self._done = False
        self._busy = False

    async def __anext__(self) -> Any:
        if self._busy:
            raise RuntimeError("`map` results are already being awaited by another task.")
        if self._done:
            raise StopAsyncIteration
        run = self._run
        if run is None:
            assert self._source is not None
            run = self._run = _Run(
                self._targets,
                self._source,
                self._limit,
                self._ordered,
                self._return_exceptions,
            )
            self._source = None
        self._busy = True
        try:
            return await run.next()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                # The stream ended (exhausted, or an error raised here): nothing more comes.
                self._done = True
            raise
        finally:
            self._busy = False

    async def asend(self, value: None) -> Any:
        """The next result, as ``__anext__``; an async generator's ``asend(None)``."""
        if value is not None:
            raise TypeError("`map` results take no values: call `asend(None)` or `__anext__`.")
        return await self.__anext__()

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        """Stop (cancelling the items in flight) and raise the given exception here."""
        await self.aclose()
        if isinstance(typ, BaseException):
            raise typ.with_traceback(tb)
        raise typ(val) if val is not None else typ()

    async def aclose(self) -> None:
        """Stop: cancel the items in flight and wait until they have finished."""
        self._done = True
        self._source = None
        run = self._run
        if run is not None:
            await run.close()

    def __del__(self) -> None:
        # Left without `aclose()` (a `break` out of `async for`): cancel what is in flight at
        # the loop's next turn (not here: a garbage collection may run this in the middle of
        # the stream's own code); the tasks finish at their next turn after that.
        run = self._run
        if run is not None and not run.finished:
            try:
                run.loop.call_soon_threadsafe(run.abandon)
            except RuntimeError:  # the loop is closed: its tasks were cancelled with it
                pass


class _Run:
    """One iteration of `MapResults`: a task pulling items, and the items in flight."""

    def __init__(
        self, targets: Targets, source: Source, limit: int, ordered: bool, return_exceptions: bool
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.limit = limit
        self.return_exceptions = return_exceptions
        self.ready = asyncio.Event()  # an item finished, or the source ended
        self.room = asyncio.Event()  # fewer than `limit` items are in flight
        self.items = Items(targets, self.loop, ordered, contextvars.copy_context(), self.ready.set)
        self.source_done = False
        self.source_error: Exception | None = None
        self.finished = False
        self.feeder = self.loop.create_task(self._feed(source))

    async def _wait_room(self) -> None:
        while self.items.in_flight >= self.limit:
            self.room.clear()
            await self.room.wait()

    async def _feed(self, source: Source) -> None:
        """Pull items while there is room; an item is pulled only when it can be started."""
        try:
            if isinstance(source, AsyncIterable):
                iterator = aiter(source)
                while True:
                    await self._wait_room()
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    self.items.start(item)
            else:
                sync_iterator = iter(source)
                while True:
                    await self._wait_room()
                    try:
                        item = next(sync_iterator)
                    except StopIteration:
                        break
                    self.items.start(item)
        except Exception as exc:
            self.source_error = exc  # raised to the consumer after the items pulled before it
        finally:
            self.source_done = True
            self.ready.set()

    async def next(self) -> Any:
        """The next result; raises an item's error (unless kept) or the source's at its turn."""
        items = self.items
        while True:
            if self.finished:
                raise StopAsyncIteration  # closed while this consumer was away
            outcome = items.take()
            if outcome is not None:
                self.room.set()
                if outcome.error is None:
                    return outcome.value
                if self.return_exceptions:
                    return outcome.error
                await self.close()
                raise outcome.error
            if self.source_done and not items.in_flight:
                error = self.source_error
                await self.close()
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self.ready.clear()
            await self.ready.wait()

    def abandon(self) -> list[asyncio.Task[Any]]:
        """Cancel the feeder and the items in flight; return the tasks still to finish."""
        self.finished = True
        tasks = self.items.close()
        if not self.feeder.done():
            self.feeder.cancel()
            tasks.append(self.feeder)
        return tasks

    async def close(self) -> None:
        """Cancel the feeder and the items in flight, and wait until they have finished."""
        tasks = self.abandon()
        if tasks:
            await asyncio.wait(tasks)
