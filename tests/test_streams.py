"""compute and map: streams of items, each computed in a fresh scope.

Ordered and unordered output, errors kept as values, back-pressure, threads, cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
import reactivex
from dags import run
from helpers import blocking_step
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler
from reactivex.subject import Subject

import pipeliner_rx
from pipeliner_rx import Pipeline, PipelineError, UnknownTargetError
from pipeliner_rx._map import DEFAULT_WINDOW

EXAMPLES = settings(max_examples=100, deadline=None)


class Boom(Exception):
    """The error of a failing item; ``index`` tells which."""

    def __init__(self, index: int) -> None:
        super().__init__(f"item {index} failed")
        self.index = index


class Collected:
    """What a subscription received; completion or error may arrive from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.items: list[Any] = []
        self.threads: set[int] = set()
        self.done: asyncio.Future[None] = self.loop.create_future()

    def on_next(self, value: Any) -> None:
        self.threads.add(threading.get_ident())
        self.items.append(value)

    def _finish(self, error: Exception | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def on_error(self, error: Exception) -> None:
        self.threads.add(threading.get_ident())
        self.loop.call_soon_threadsafe(self._finish, error)

    def on_completed(self) -> None:
        self.threads.add(threading.get_ident())
        self.loop.call_soon_threadsafe(self._finish, None)

    def subscribe(self, observable: reactivex.Observable[Any]) -> Any:
        return observable.subscribe(self.on_next, self.on_error, self.on_completed)

    async def wait(self, bound: float = 2) -> list[Any]:
        await asyncio.wait_for(self.done, bound)
        return self.items


async def no_task_left() -> None:
    """Every task but the current one finishes by itself, within a bound."""
    current = asyncio.current_task()
    for _ in range(20):
        left = [task for task in asyncio.all_tasks() if task is not current]
        if not left:
            return
        await asyncio.wait_for(asyncio.wait(left), 2)
    raise AssertionError(f"tasks keep appearing: {asyncio.all_tasks()}")


def doubling(pipeline: Pipeline) -> list[int]:
    """Register `out` = 2 * x; return the list of threads it ran on."""
    threads: list[int] = []

    @pipeline.step(provides="out")
    async def double(x: int) -> int:
        threads.append(threading.get_ident())
        return 2 * x

    return threads


def inputs(n: int) -> list[dict[str, int]]:
    return [{"x": i} for i in range(n)]


# -- compute from any thread --------------------------------------------------------------------


async def test_compute_subscribed_on_another_thread_runs_on_the_loop(pipeline: Pipeline) -> None:
    step_threads = doubling(pipeline)
    stream = reactivex.from_iterable(inputs(5)).pipe(pipeline.compute("out"))
    got = Collected()
    await asyncio.wait_for(asyncio.to_thread(got.subscribe, stream), 2)
    assert await got.wait() == [0, 2, 4, 6, 8]
    loop_thread = threading.get_ident()
    assert set(step_threads) == {loop_thread}
    assert got.threads == {loop_thread}  # notifications come on the loop's thread
    await no_task_left()


async def test_compute_inside_concat_map_over_a_worker_thread_source_gives_results(
    pipeline: Pipeline,
) -> None:
    # The pattern of the old README: concat_map subscribes the inner stream on the thread the
    # source emits on. It used to turn every item into the fallback.
    doubling(pipeline)
    operator = pipeline.compute("out")
    scheduler = ThreadPoolScheduler(2)
    try:
        stream = reactivex.from_iterable(inputs(6)).pipe(
            ops.subscribe_on(scheduler),
            ops.concat_map(
                lambda item: reactivex.just(item).pipe(
                    operator, ops.catch(lambda error, _: reactivex.just(-1))
                )
            ),
        )
        got = Collected()
        got.subscribe(stream)
        assert await got.wait() == [0, 2, 4, 6, 8, 10]
    finally:
        scheduler.executor.shutdown(wait=False)
    await no_task_left()


async def test_compute_takes_items_and_completion_from_another_thread(pipeline: Pipeline) -> None:
    doubling(pipeline)
    source: Subject[Mapping[str, Any]] = Subject()
    got = Collected()
    got.subscribe(source.pipe(pipeline.compute("out", max_concurrency=2)))

    def push() -> None:
        for item in inputs(8):
            source.on_next(item)
        source.on_completed()

    await asyncio.wait_for(asyncio.to_thread(push), 2)
    assert await got.wait() == [2 * i for i in range(8)]
    await no_task_left()


async def test_compute_disposed_from_another_thread_cancels_items(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "out", "block")
    source: Subject[Mapping[str, Any]] = Subject()
    got = Collected()
    disposable = got.subscribe(source.pipe(pipeline.compute("out")))
    source.on_next({"x": 1})
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.wait_for(asyncio.to_thread(disposable.dispose), 2)
    await asyncio.wait_for(cancelled.wait(), 1)
    await no_task_left()
    assert got.items == [] and not got.done.done()


async def test_compute_made_and_subscribed_off_the_loop_uses_the_pipelines_loop(
    pipeline: Pipeline,
) -> None:
    doubling(pipeline)
    pipeline.add_environment_resources(ready=True)
    assert await pipeline.resource("ready")  # binds the pipeline to this loop
    got = Collected()

    def elsewhere() -> None:  # no running loop in this thread
        got.subscribe(reactivex.from_iterable(inputs(3)).pipe(pipeline.compute("out")))

    await asyncio.wait_for(asyncio.to_thread(elsewhere), 2)
    assert await got.wait() == [0, 2, 4]


def test_compute_without_an_event_loop_errors_like_observe(pipeline: Pipeline) -> None:
    doubling(pipeline)
    errors: list[Exception] = []
    reactivex.from_iterable(inputs(1)).pipe(pipeline.compute("out")).subscribe(
        on_error=errors.append
    )
    observed: list[Exception] = []
    pipeline.observe("out").subscribe(on_error=observed.append)
    assert len(errors) == 1 and len(observed) == 1
    assert type(errors[0]) is type(observed[0]) is PipelineError
    assert "compute(...) needs an asyncio event loop" in str(errors[0])


# -- targets ------------------------------------------------------------------------------------


def test_compute_and_map_refuse_a_step_of_another_pipeline(pipeline: Pipeline) -> None:
    other = Pipeline()

    @other.step(provides="y")
    async def make_y(x: int) -> int:
        return x

    for make in (
        lambda: pipeline.compute(make_y),
        lambda: pipeline.map([], make_y),
    ):
        with pytest.raises(TypeError, match="`make_y` of another pipeline") as info:
            make()
        assert f"{id(other):#x}" in str(info.value)
        assert f"{id(pipeline):#x}" in str(info.value)


def test_a_step_of_the_default_pipeline_is_named_so(pipeline: Pipeline) -> None:
    @pipeliner_rx.step(provides="y")
    async def make_y(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"another pipeline \(the default pipeline"):
        pipeline.compute(make_y)


def test_unknown_string_targets_raise_unknown_target_error(pipeline: Pipeline) -> None:
    doubling(pipeline)
    with pytest.raises(UnknownTargetError) as info:
        pipeline.compute("out", "typo")
    assert info.value.target == "typo" and info.value.choices == ("double",)
    with pytest.raises(UnknownTargetError):
        pipeline.map([], "typo")


def test_bad_arguments_are_refused_when_the_operator_is_made(pipeline: Pipeline) -> None:
    doubling(pipeline)
    with pytest.raises(TypeError, match="at least one target"):
        pipeline.map([])
    with pytest.raises(TypeError, match="resource name or a step"):
        pipeline.compute(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrency"):
        pipeline.map([], "out", max_concurrency=0)
    with pytest.raises(TypeError, match="single mapping"):
        pipeline.map({"x": 1}, "out")  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="iterable"):
        pipeline.map(3, "out")  # type: ignore[arg-type]


async def test_targets_may_be_inputs_and_step_names(pipeline: Pipeline) -> None:
    doubling(pipeline)

    @pipeline.step()
    async def describe(x: int, out: int) -> str:
        return f"{x}->{out}"

    got = Collected()
    got.subscribe(reactivex.from_iterable(inputs(2)).pipe(pipeline.compute("x", "describe")))
    assert await got.wait() == [(0, "0->0"), (1, "1->2")]
    assert [r async for r in pipeline.map(inputs(2), "describe")] == ["0->0", "1->2"]


async def test_an_item_that_is_not_a_mapping_fails_that_item(pipeline: Pipeline) -> None:
    doubling(pipeline)
    results = [r async for r in pipeline.map([{"x": 1}, 5], "out", return_exceptions=True)]  # type: ignore[list-item]
    assert results[0] == 2
    assert isinstance(results[1], TypeError) and "must be a mapping" in str(results[1])


# -- ordered, unordered, errors as values ---------------------------------------------------------


def gated(pipeline: Pipeline) -> dict[int, asyncio.Event]:
    """`out` = x once the gate of x (if any) opens; failing for negative x."""
    gates: dict[int, asyncio.Event] = {}

    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        if x in gates:
            await gates[x].wait()
        if x < 0:
            raise Boom(x)
        return x

    return gates


async def test_compute_unordered_emits_in_completion_order(pipeline: Pipeline) -> None:
    gates = gated(pipeline)
    gates[0] = asyncio.Event()  # item 0 finishes only once item 1 has been emitted
    got = Collected()
    source: Subject[Mapping[str, Any]] = Subject()
    stream = source.pipe(
        pipeline.compute("out", ordered=False), ops.do_action(lambda _: gates[0].set())
    )
    got.subscribe(stream)
    source.on_next({"x": 0})
    source.on_next({"x": 1})
    source.on_completed()
    assert await got.wait() == [1, 0]


async def test_compute_ordered_holds_back_results_behind_a_slow_item(pipeline: Pipeline) -> None:
    gates = gated(pipeline)
    gates[0] = asyncio.Event()
    got = Collected()
    got.subscribe(reactivex.from_iterable(inputs(3)).pipe(pipeline.compute("out")))
    for _ in range(100):  # until items 1 and 2 have finished: only item 0 is left computing
        if len(item_tasks()) == 1:
            break
        await asyncio.sleep(0)
    assert len(item_tasks()) == 1
    assert got.items == []  # finished, but held back behind item 0
    gates[0].set()
    assert await got.wait() == [0, 1, 2]


async def test_compute_return_exceptions_emits_errors_in_place(pipeline: Pipeline) -> None:
    gated(pipeline)
    got = Collected()
    items = [{"x": 1}, {"x": -2}, {"x": 3}, {"x": -4}]
    got.subscribe(
        reactivex.from_iterable(items).pipe(pipeline.compute("out", return_exceptions=True))
    )
    out = await got.wait()
    assert out[0] == 1 and out[2] == 3
    assert isinstance(out[1], Boom) and out[1].index == -2
    assert isinstance(out[3], Boom) and out[3].index == -4
    await no_task_left()


async def test_compute_error_without_return_exceptions_ends_the_stream(pipeline: Pipeline) -> None:
    gated(pipeline)
    got = Collected()
    items = [{"x": 1}, {"x": -2}, {"x": 3}]
    got.subscribe(reactivex.from_iterable(items).pipe(pipeline.compute("out")))
    with pytest.raises(Boom):
        await got.wait()
    assert got.items == [1]
    await no_task_left()


def item_tasks() -> list[asyncio.Task[Any]]:
    """The tasks computing items of a stream (one per item in flight)."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "Targets.compute"
    ]


@pytest.mark.parametrize("return_exceptions", [False, True])
async def test_an_item_cancelled_from_outside_fails_with_pipeline_error(
    pipeline: Pipeline, return_exceptions: bool
) -> None:
    started, cancelled, _ = blocking_step(pipeline, "out", "block")
    got = Collected()
    source: Subject[Mapping[str, Any]] = Subject()
    got.subscribe(source.pipe(pipeline.compute("out", return_exceptions=return_exceptions)))
    source.on_next({"x": 1})
    await asyncio.wait_for(started.wait(), 1)
    (task,) = item_tasks()
    task.cancel()  # not the stream's doing
    await asyncio.wait_for(cancelled.wait(), 1)
    if return_exceptions:
        source.on_completed()
        (error,) = await got.wait()
    else:
        with pytest.raises(PipelineError) as info:
            await got.wait()
        error = info.value
    assert type(error) is PipelineError and "cancelled from outside" in str(error)
    await no_task_left()


async def test_map_item_cancelled_from_outside_is_kept_as_an_error(pipeline: Pipeline) -> None:
    started, _, _ = blocking_step(pipeline, "out", "block")
    results = pipeline.map(inputs(1), "out", return_exceptions=True)
    pending = asyncio.ensure_future(anext(results))
    await asyncio.wait_for(started.wait(), 1)
    (task,) = item_tasks()
    task.cancel()
    error = await asyncio.wait_for(pending, 1)
    assert type(error) is PipelineError
    assert [r async for r in results] == []
    await no_task_left()


# -- generated cases against a reference ---------------------------------------------------------

Case = tuple[list[tuple[int, bool]], int | None, bool, bool]


@st.composite
def stream_cases(draw: st.DrawFn) -> Case:
    """Items as (loop turns the item takes, whether it fails), a limit and the two modes."""
    items = draw(st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=12))
    limit = draw(st.none() | st.integers(1, 5))
    return items, limit, draw(st.booleans()), draw(st.booleans())


class Work:
    """`out` = i after ``turns`` loop turns, or `Boom(i)`; counts how many run at once."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.running = 0
        self.peak = 0

        @pipeline.step(provides="out")
        async def work(i: int, turns: int, fails: bool) -> int:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                for _ in range(turns):
                    await asyncio.sleep(0)
            finally:
                self.running -= 1
            if fails:
                raise Boom(i)
            return i


def as_items(items: list[tuple[int, bool]]) -> list[dict[str, Any]]:
    return [{"i": i, "turns": turns, "fails": fails} for i, (turns, fails) in enumerate(items)]


def check_against_reference(
    items: list[tuple[int, bool]],
    ordered: bool,
    return_exceptions: bool,
    outputs: list[Any],
    error: BaseException | None,
) -> None:
    """The sequential reference: each item's value, or its error, in input order."""

    def key(result: Any) -> tuple[str, int]:
        assert isinstance(result, (int, Boom)), result
        return ("error", result.index) if isinstance(result, Boom) else ("value", result)

    reference = [("error", i) if fails else ("value", i) for i, (_, fails) in enumerate(items)]
    failing = [i for i, (_, fails) in enumerate(items) if fails]
    got = [key(result) for result in outputs]
    if return_exceptions or not failing:
        assert error is None
        assert got == reference if ordered else sorted(got) == sorted(reference)
        return
    assert isinstance(error, Boom), error
    if ordered:
        # The results before the first failing item, then its error.
        assert error.index == failing[0]
        assert got == reference[: failing[0]]
    else:
        assert error.index in failing
        assert len(set(got)) == len(got)
        assert all(kind == "value" for kind, _ in got)
        assert set(got) <= set(reference)


@EXAMPLES
@given(stream_cases())
def test_compute_matches_the_reference(case: Case) -> None:
    items, limit, ordered, return_exceptions = case

    async def main() -> None:
        pipeline = Pipeline()
        work = Work(pipeline)
        got = Collected()
        got.subscribe(
            reactivex.from_iterable(as_items(items)).pipe(
                pipeline.compute(
                    "out",
                    max_concurrency=limit,
                    ordered=ordered,
                    return_exceptions=return_exceptions,
                )
            )
        )
        error: BaseException | None = None
        try:
            await got.wait(5)
        except Boom as exc:
            error = exc
        check_against_reference(items, ordered, return_exceptions, got.items, error)
        if limit is not None:
            assert work.peak <= limit
        await no_task_left()

    run(main)


@EXAMPLES
@given(stream_cases(), st.booleans(), st.lists(st.integers(0, 4), max_size=12))
def test_map_matches_the_reference_and_bounds_what_it_reads_ahead(
    case: Case, async_source: bool, pauses: list[int]
) -> None:
    items, limit, ordered, return_exceptions = case
    bound = limit or DEFAULT_WINDOW

    async def main() -> None:
        pipeline = Pipeline()
        work = Work(pipeline)
        pulled = consumed = ahead = 0

        def count() -> None:
            nonlocal pulled, ahead
            pulled += 1
            ahead = max(ahead, pulled - consumed)

        def plain() -> Iterator[dict[str, Any]]:
            for item in as_items(items):
                count()
                yield item

        async def asynchronous() -> AsyncIterator[dict[str, Any]]:
            for item in as_items(items):
                await asyncio.sleep(0)
                count()
                yield item

        source = asynchronous() if async_source else plain()
        outputs: list[Any] = []
        error: BaseException | None = None
        results = pipeline.map(
            source,
            "out",
            max_concurrency=limit,
            ordered=ordered,
            return_exceptions=return_exceptions,
        )
        try:
            async with contextlib.aclosing(results):
                async for result in results:
                    outputs.append(result)
                    consumed += 1
                    # A consumer slower or faster than the items.
                    for _ in range(pauses[len(outputs) % len(pauses)] if pauses else 0):
                        await asyncio.sleep(0)
        except Boom as exc:
            error = exc
        check_against_reference(items, ordered, return_exceptions, outputs, error)
        assert ahead <= bound
        assert work.peak <= bound
        await no_task_left()

    run(main)


# -- map ------------------------------------------------------------------------------------------


async def test_map_yields_results_in_input_order_from_an_async_source(pipeline: Pipeline) -> None:
    gated(pipeline)

    @pipeline.step(provides="label")
    async def label(out: int, prefix: str) -> str:
        return f"{prefix}{out}"

    pipeline.add_environment_resources(prefix="#")

    async def source() -> AsyncIterator[dict[str, int]]:
        for i in range(5):
            yield {"x": i}

    results = [r async for r in pipeline.map(source(), "out", "label", max_concurrency=2)]
    assert results == [(i, f"#{i}") for i in range(5)]
    assert not pipeline.resource_ready("out")  # each item in a scope of its own
    await no_task_left()


async def test_map_raises_the_first_failure_after_the_results_before_it(
    pipeline: Pipeline,
) -> None:
    gated(pipeline)
    seen: list[int] = []
    with pytest.raises(Boom) as info:
        async for result in pipeline.map([{"x": 1}, {"x": 2}, {"x": -3}, {"x": 4}], "out"):
            seen.append(result)
    assert seen == [1, 2] and info.value.index == -3
    await no_task_left()


async def test_map_unordered_yields_in_completion_order(pipeline: Pipeline) -> None:
    gates = gated(pipeline)
    gates[0] = asyncio.Event()
    seen: list[int] = []
    async for result in pipeline.map(inputs(3), "out", ordered=False):
        seen.append(result)
        gates[0].set()  # item 0 finishes only after another result was handed out
    assert seen[-1] == 0 and sorted(seen) == [0, 1, 2]


async def test_map_raises_a_source_error_after_the_items_read_before_it(
    pipeline: Pipeline,
) -> None:
    doubling(pipeline)

    def source() -> Iterator[dict[str, int]]:
        yield {"x": 1}
        yield {"x": 2}
        raise OSError("source broke")

    seen: list[int] = []
    with pytest.raises(OSError, match="source broke"):
        async for result in pipeline.map(source(), "out"):
            seen.append(result)
    assert seen == [2, 4]
    await no_task_left()


async def test_map_reads_an_endless_source_only_as_far_as_the_bound(pipeline: Pipeline) -> None:
    doubling(pipeline)
    pulled = 0

    def endless() -> Iterator[dict[str, int]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield {"x": pulled}

    async with contextlib.aclosing(pipeline.map(endless(), "out")) as results:
        assert await asyncio.wait_for(anext(results), 1) == 2
        for _ in range(20):  # plenty of turns for the reader to run ahead, if it could
            await asyncio.sleep(0)
        assert pulled <= DEFAULT_WINDOW + 1
    async with contextlib.aclosing(pipeline.map(endless(), "out", max_concurrency=3)) as results:
        pulled = 0
        assert await asyncio.wait_for(anext(results), 1) == 2
        for _ in range(20):
            await asyncio.sleep(0)
        assert pulled == 4  # 1 handed out, 3 ahead
    await no_task_left()


async def test_map_slow_consumer_slows_the_source(pipeline: Pipeline) -> None:
    doubling(pipeline)
    source: asyncio.Queue[dict[str, int]] = asyncio.Queue()
    taken = asyncio.Event()

    async def drain() -> AsyncIterator[dict[str, int]]:
        while True:
            item = await source.get()
            taken.set()
            yield item

    for item in inputs(10):
        source.put_nowait(item)
    async with contextlib.aclosing(pipeline.map(drain(), "out", max_concurrency=2)) as results:
        assert await asyncio.wait_for(anext(results), 1) == 0
        await asyncio.wait_for(taken.wait(), 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert source.qsize() == 10 - 3  # 1 consumed, 2 ahead; the rest stays in the queue


async def test_breaking_out_of_map_cancels_in_flight_items(pipeline: Pipeline) -> None:
    started = cancelled = 0
    all_started, all_cancelled = asyncio.Event(), asyncio.Event()

    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        nonlocal started, cancelled
        if x == 0:
            return x
        started += 1
        if started == 2:
            all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            if cancelled == 2:
                all_cancelled.set()
            raise
        return x

    async for result in pipeline.map(inputs(3), "out"):
        assert result == 0
        await asyncio.wait_for(all_started.wait(), 1)
        break
    await asyncio.wait_for(all_cancelled.wait(), 1)
    await no_task_left()


async def test_map_aclose_waits_until_nothing_is_left(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "out", "block")
    results = pipeline.map(inputs(3), "out")
    pending = asyncio.ensure_future(anext(results))
    await asyncio.wait_for(started.wait(), 1)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await asyncio.wait_for(results.aclose(), 1)
    assert cancelled.is_set()
    current = asyncio.current_task()
    assert [task for task in asyncio.all_tasks() if task is not current] == []
    assert [r async for r in results] == []


async def test_map_survives_a_timed_out_wait_for_its_next_result(pipeline: Pipeline) -> None:
    gates = gated(pipeline)
    gates[0] = asyncio.Event()
    results = pipeline.map(inputs(2), "out")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(results), 0.05)
    gates[0].set()
    assert [r async for r in results] == [0, 1]


async def test_map_items_start_from_the_callers_context(pipeline: Pipeline) -> None:
    # Each item's scope is created in a copy of the consumer's context (its task's variables).
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")

    @pipeline.step(provides="seen")
    async def seen(x: int) -> str:
        return f"{x}:{marker.get()}"

    marker.set("consumer")
    assert [r async for r in pipeline.map(inputs(2), "seen")] == ["0:consumer", "1:consumer"]


async def test_map_is_typed_as_an_async_generator(pipeline: Pipeline) -> None:
    doubling(pipeline)
    results = pipeline.map(inputs(2), "out")
    async with contextlib.aclosing(results):
        assert await results.asend(None) == 0
        with pytest.raises(KeyError):
            await results.athrow(KeyError("stop"))
    assert [r async for r in results] == []


async def test_map_inside_a_step_fans_out_over_items(pipeline: Pipeline) -> None:
    doubling(pipeline)

    @pipeline.step(provides="total")
    async def total(xs: list[int]) -> int:
        results = pipeline.map(({"x": x} for x in xs), "out", max_concurrency=2)
        return sum([r async for r in results])

    assert await asyncio.wait_for(total(xs=[1, 2, 3]), 2) == 12
    await no_task_left()
