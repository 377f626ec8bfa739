"""Rules that once broke under adversarial use: no hang, no leak, no lost error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex.subject import Subject

from pipeliner_rx import CycleError, MissingResourceError, Pipeline, PipelineError


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def test_strict_call_raises_even_when_provider_waits_for_a_push(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(x: int) -> int:
        return x

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    lenient = asyncio.create_task(pipeline.resource("a"))  # waits for `x` to be pushed
    await asyncio.sleep(0)
    with pytest.raises(MissingResourceError, match="`x`, needed by `make_a` <- `make_b`"):
        await asyncio.wait_for(make_b(), 1)
    with pytest.raises(MissingResourceError, match="`x`"):
        await asyncio.wait_for(make_a(), 1)  # the step itself is the active one
    pipeline.add_environment_resources(x=3)
    assert await asyncio.wait_for(lenient, 1) == 3


async def test_step_raising_cancelled_error_does_not_hang_dependents(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a() -> int:
        raise asyncio.CancelledError

    @pipeline.step()
    async def use(a: int) -> int:
        return a

    with pytest.raises(PipelineError, match="`make_a` was cancelled from outside"):
        await asyncio.wait_for(use(), 1)


async def test_demand_from_inside_a_step_that_needs_the_step_is_a_cycle(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="total")
    async def total(x: int) -> int:
        report: int = await pipeline.resource("report")
        return x + report

    @pipeline.step(provides="report")
    async def report(total: int) -> int:
        return total * 2

    with pytest.raises(CycleError, match="total -> report -> report -> total -> total"):
        await asyncio.wait_for(total(x=1), 1)


async def test_raising_observer_does_not_block_other_outputs(
    pipeline: Pipeline, loop_errors: list[dict[str, Any]]
) -> None:
    @pipeline.step(provides=("a", "b"))
    async def pair() -> tuple[int, int]:
        return 1, 2

    def broken(value: int) -> None:
        raise RuntimeError("observer bug")

    pipeline.observe("a").subscribe(broken)
    assert await asyncio.wait_for(pipeline.resource("b"), 1) == 2
    assert any(isinstance(c.get("exception"), RuntimeError) for c in loop_errors)


async def test_raising_events_subscriber_does_not_break_steps(
    pipeline: Pipeline, loop_errors: list[dict[str, Any]]
) -> None:
    seen: list[str] = []

    def broken(event: Any) -> None:
        raise ValueError("logging hook bug")

    pipeline.events.subscribe(broken)
    pipeline.events.subscribe(lambda event: seen.append(event.kind))

    @pipeline.step(provides="a")
    async def make_a() -> int:
        return 1

    assert await asyncio.wait_for(make_a(), 1) == 1
    assert seen == ["started", "succeeded"]
    assert len(loop_errors) == 2


async def test_feed_error_while_provider_runs_does_not_strand_later_demand(
    pipeline: Pipeline,
) -> None:
    release = asyncio.Event()

    @pipeline.step(provides="a")
    async def make_a() -> int:
        await release.wait()
        return 1

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a + 1

    source: Subject[int] = Subject()
    pipeline.feed("a", source)
    first = asyncio.create_task(pipeline.resource("b"))
    await asyncio.sleep(0)
    source.on_error(KeyError("feed failed"))
    with pytest.raises(KeyError):
        await asyncio.wait_for(first, 1)
    again = asyncio.create_task(pipeline.resource("b"))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(again, 1) == 2


async def test_observe_subscribed_from_another_thread_gets_errors(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(b: int) -> int:
        return b

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    pipeline.add_environment_resources(warm=1)  # binds the store to this loop
    await pipeline.resource("warm")
    errors: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def subscribe() -> None:
        def on_error(e: Exception) -> None:
            loop.call_soon_threadsafe(errors.set_result, e)

        pipeline.observe("a").subscribe(on_error=on_error)

    await asyncio.to_thread(subscribe)
    assert isinstance(await asyncio.wait_for(errors, 1), CycleError)


async def test_provider_pending_after_its_output_was_pushed_is_released(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="a")
    async def make_a(x: int) -> int:
        return x

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a * 2

    waiter = asyncio.create_task(pipeline.resource("b"))  # make_a waits for `x`
    await asyncio.sleep(0)
    pipeline.add_environment_resources(a=5)
    assert await asyncio.wait_for(waiter, 1) == 10
    store = pipeline._engine.store
    assert store.active == {}
    assert store.subjects["x"].observers == []


async def test_leaving_a_scope_cancels_steps_that_provide_nothing(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @pipeline.step()
    async def report(x: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with pipeline.scope(x=1):
        caller = asyncio.create_task(report())
        await asyncio.wait_for(started.wait(), 1)
    assert cancelled.is_set()  # cancelled, and waited for, before `async with` ended
    with pytest.raises(PipelineError, match="closed"):
        await asyncio.wait_for(caller, 1)


async def test_sync_step_in_a_scope_pushes_into_the_scope(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    def make_a(x: int) -> int:
        pipeline.add_environment_resources(note=f"seen {x}")
        return x

    for x in (1, 2):
        async with pipeline.scope(x=x) as scope:
            assert await asyncio.wait_for(make_a(), 1) == x
            assert await scope.resource("note") == f"seen {x}"
    assert not pipeline.resource_ready("note")


async def test_feed_set_up_before_the_loop_pushes_on_the_loop_thread() -> None:
    pipeline = Pipeline()
    source: Subject[int] = Subject()

    def setup() -> None:  # no loop in this thread, and the store is bound to none yet
        pipeline.feed("x", source)

    await asyncio.to_thread(setup)
    threads: list[int] = []

    @pipeline.step(provides="b")
    async def make_b(x: int) -> int:
        threads.append(threading.get_ident())
        return x + 1

    waiter = asyncio.create_task(pipeline.resource("b"))
    await asyncio.sleep(0)
    producer = threading.Thread(target=source.on_next, args=(1,))
    producer.start()
    assert await asyncio.wait_for(waiter, 1) == 2
    await asyncio.to_thread(producer.join, 1)
    assert threads == [threading.get_ident()]


async def test_cancelled_event_when_cancelled_during_retry_delay(pipeline: Pipeline) -> None:
    kinds: list[str] = []
    pipeline.events.subscribe(lambda e: kinds.append(e.kind))
    failed_once = asyncio.Event()

    @pipeline.step(provides="v", retries=3, retry_delay=10)
    async def flaky() -> int:
        failed_once.set()
        raise ConnectionError("down")

    task = asyncio.create_task(pipeline.resource("v"))
    await asyncio.wait_for(failed_once.wait(), 1)
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert kinds == ["started", "failed", "cancelled"]


async def test_leaving_a_scope_detaches_its_pending_feeds(pipeline: Pipeline) -> None:
    readings: Subject[int] = Subject()
    for _ in range(100):
        async with pipeline.scope() as scope:
            scope.feed("divisor", readings)  # nothing arrives before the scope ends
    assert readings.observers == []
    pipeline.feed("divisor", readings)
    pipeline.reset()  # emptying the store stops its feeds too
    assert readings.observers == []
    readings.on_next(1)
    assert not pipeline.resource_ready("divisor")
