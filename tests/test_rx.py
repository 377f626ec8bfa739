"""observe / feed / compute: composing a pipeline with other Rx streams."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import reactivex
from helpers import blocking_step
from reactivex import operators as ops
from reactivex.subject import Subject

from pipeliner_rx import MissingResourceError, Pipeline


def collect(observable: reactivex.Observable[Any]) -> tuple[list[Any], asyncio.Future[Any], Any]:
    """Subscribe; return the items, a future set on completion or error, and the disposable."""
    items: list[Any] = []
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_error(error: Exception) -> None:
        if not done.done():
            done.set_exception(error)

    def on_completed() -> None:
        if not done.done():
            done.set_result(None)

    disposable = observable.subscribe(items.append, on_error, on_completed)
    return items, done, disposable


# -- observe --------------------------------------------------------------------------------------


async def test_observe_is_lazy_and_emits_once(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step(provides="v")
    async def v() -> int:
        runs.append(1)
        return 3

    observable = pipeline.observe("v")
    await asyncio.sleep(0.01)
    assert runs == []  # nothing runs before subscription
    items, done, _ = collect(observable)
    await asyncio.wait_for(done, 1)
    assert items == [3] and runs == [1]
    assert await asyncio.wait_for(observable, 1) == 3  # reactivex's own __await__
    assert runs == [1]


async def test_observe_errors_with_the_step_exception(pipeline: Pipeline) -> None:
    @pipeline.step(provides="v")
    async def v() -> int:
        raise LookupError("nope")

    items, done, _ = collect(pipeline.observe("v"))
    with pytest.raises(LookupError, match="nope"):
        await asyncio.wait_for(done, 1)
    assert items == []


async def test_observe_waits_for_pushed_inputs(pipeline: Pipeline) -> None:
    @pipeline.step(provides="total")
    async def total(a: int, b: int) -> int:
        return a + b

    items, done, _ = collect(pipeline.observe("total"))
    pipeline.add_environment_resources(a=1)
    await asyncio.sleep(0.01)
    assert items == []
    pipeline.add_environment_resources(b=2)
    await asyncio.wait_for(done, 1)
    assert items == [3]


async def test_disposing_observe_withdraws_demand(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "v", "v")

    _, _, disposable = collect(pipeline.observe("v"))
    await asyncio.wait_for(started.wait(), 1)
    disposable.dispose()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert not pipeline.resource_ready("v")


async def test_observe_composes_with_operators(pipeline: Pipeline) -> None:
    @pipeline.step(provides="v")
    async def v(x: int) -> int:
        return x * 2

    def add(pair: tuple[int, ...]) -> int:  # mypy infers no item type for a lambda here
        return pair[0] + pair[1]

    pipeline.add_environment_resources(x=5)
    combined = reactivex.zip(pipeline.observe("v"), pipeline.observe("x")).pipe(ops.map(add))
    assert await asyncio.wait_for(combined, 1) == 15


# -- feed -----------------------------------------------------------------------------------------


async def test_feed_takes_the_first_item(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        return x * 2

    source: Subject[int] = Subject()
    pipeline.feed("x", source)
    waiter = asyncio.create_task(pipeline.resource("double"))
    await asyncio.sleep(0)
    source.on_next(21)
    source.on_next(99)  # ignored
    assert await asyncio.wait_for(waiter, 1) == 42
    assert await pipeline.resource("x") == 21
    assert source.observers == []  # it stopped listening after the first item


async def test_feed_error_fails_the_resource(pipeline: Pipeline) -> None:
    source: Subject[int] = Subject()
    pipeline.feed("x", source)
    waiter = asyncio.create_task(pipeline.resource("x"))
    await asyncio.sleep(0)
    source.on_error(ConnectionError("lost"))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiter, 1)
    assert not pipeline.resource_ready("x")
    pipeline.add_environment_resources(x=1)  # not cached: it can still be set
    assert await pipeline.resource("x") == 1


async def test_feed_dispose_stops_listening(pipeline: Pipeline) -> None:
    source: Subject[int] = Subject()
    disposable = pipeline.feed("x", source)
    disposable.dispose()
    source.on_next(1)
    assert not pipeline.resource_ready("x")


async def test_feed_from_another_thread(pipeline: Pipeline) -> None:
    source: Subject[int] = Subject()
    pipeline.feed("x", source)
    waiter = asyncio.create_task(pipeline.resource("x"))
    await asyncio.sleep(0)
    seen_thread: list[int] = []

    @pipeline.step(provides="where")
    async def where(x: int) -> int:
        seen_thread.append(threading.get_ident())
        return x

    thread = threading.Thread(target=source.on_next, args=(7,))
    thread.start()
    thread.join(1)
    assert await asyncio.wait_for(waiter, 1) == 7
    assert await asyncio.wait_for(where(), 1) == 7
    assert seen_thread == [threading.get_ident()]


# -- compute --------------------------------------------------------------------------------------


async def test_compute_keeps_input_order_and_limits_concurrency(pipeline: Pipeline) -> None:
    in_flight = 0
    peak = 0

    @pipeline.step(provides="out")
    async def work(x: int, delay: float) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(delay)
        in_flight -= 1
        return x * 10

    items = [{"x": i, "delay": 0.05 if i % 2 == 0 else 0.0} for i in range(12)]
    stream = reactivex.from_iterable(items).pipe(pipeline.compute("out", max_concurrency=3))
    out, done, _ = collect(stream)
    await asyncio.wait_for(done, 5)
    assert out == [i * 10 for i in range(12)]
    assert 1 < peak <= 3


async def test_compute_runs_items_concurrently_without_limit(pipeline: Pipeline) -> None:
    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    start = time.perf_counter()
    stream = reactivex.from_iterable([{"x": i} for i in range(30)]).pipe(pipeline.compute("out"))
    out, done, _ = collect(stream)
    await asyncio.wait_for(done, 5)
    assert out == list(range(30))
    assert time.perf_counter() - start < 1.0  # 30 x 0.1 s in sequence would be 3 s


async def test_compute_several_targets_and_steps(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        return 2 * x

    @pipeline.step()
    async def describe(x: int, double: int) -> str:
        return f"{x}->{double}"

    pipeline.add_environment_resources(offset=100)  # the environment seeds every item's scope

    @pipeline.step(provides="shifted")
    async def shift(x: int, offset: int) -> int:
        return x + offset

    stream = reactivex.from_iterable([{"x": 1}, {"x": 2}]).pipe(
        pipeline.compute("double", describe, "shifted")
    )
    out, done, _ = collect(stream)
    await asyncio.wait_for(done, 1)
    assert out == [(2, "1->2", 101), (4, "2->4", 102)]
    assert not pipeline.resource_ready("double")


async def test_compute_error_ends_stream_with_on_error(pipeline: Pipeline) -> None:
    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        if x == 2:
            raise ValueError("bad item")
        return x

    stream = reactivex.from_iterable([{"x": 1}, {"x": 2}, {"x": 3}]).pipe(pipeline.compute("out"))
    out, done, _ = collect(stream)
    with pytest.raises(ValueError, match="bad item"):
        await asyncio.wait_for(done, 1)
    assert out == [1]


async def test_compute_missing_input_is_an_error_not_a_hang(pipeline: Pipeline) -> None:
    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        return x

    stream = reactivex.from_iterable([{"y": 1}]).pipe(pipeline.compute("out"))
    _, done, _ = collect(stream)
    with pytest.raises(MissingResourceError, match="`x`"):
        await asyncio.wait_for(done, 1)


async def test_compute_stream_survives_bad_items_with_catch(pipeline: Pipeline) -> None:
    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        if x == 2:
            raise ValueError("bad item")
        return x

    operator = pipeline.compute("out")
    stream = reactivex.from_iterable([{"x": 1}, {"x": 2}, {"x": 3}]).pipe(
        ops.concat_map(
            lambda item: reactivex.just(item).pipe(
                operator, ops.catch(lambda error, _: reactivex.just(-1))
            )
        )
    )
    out, done, _ = collect(stream)
    await asyncio.wait_for(done, 1)
    assert out == [1, -1, 3]


async def test_compute_dispose_cancels_in_flight_items(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    source: Subject[dict[str, int]] = Subject()
    _, _, disposable = collect(source.pipe(pipeline.compute("out")))
    source.on_next({"x": 1})
    await asyncio.wait_for(started.wait(), 1)
    disposable.dispose()
    await asyncio.wait_for(cancelled.wait(), 1)


def test_compute_rejects_bad_arguments(pipeline: Pipeline) -> None:
    with pytest.raises(TypeError):
        pipeline.compute()
    with pytest.raises(ValueError, match="max_concurrency"):
        pipeline.compute("x", max_concurrency=0)
