"""The events stream, timeouts and retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeliner_rx import Pipeline, StepEvent


def record(pipeline: Pipeline) -> list[StepEvent]:
    events: list[StepEvent] = []
    pipeline.events.subscribe(events.append)
    return events


async def test_events_for_success_skip_and_failure(pipeline: Pipeline) -> None:
    events = record(pipeline)

    @pipeline.step(provides="a")
    async def make_a() -> int:
        return 1

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        raise ValueError("b failed")

    assert await make_a() == 1
    assert await make_a() == 1  # outputs present: skipped
    with pytest.raises(ValueError):
        await asyncio.wait_for(make_b(), 1)
    kinds = [(e.step, e.kind) for e in events]
    assert kinds == [
        ("make_a", "started"),
        ("make_a", "succeeded"),
        ("make_a", "skipped"),
        ("make_b", "started"),
        ("make_b", "failed"),
    ]
    assert events[0].elapsed is None and events[1].elapsed is not None
    assert isinstance(events[-1].error, ValueError)
    assert all(e.scope == 0 for e in events)


async def test_skipped_event_for_provider_whose_outputs_arrived(pipeline: Pipeline) -> None:
    events = record(pipeline)

    @pipeline.step(provides="out")
    async def provider(x: int) -> int:
        return x

    waiter = asyncio.create_task(pipeline.resource("out"))
    await asyncio.sleep(0)
    pipeline.add_environment_resources(out=5, x=1)  # `out` arrives before the provider runs
    assert await asyncio.wait_for(waiter, 1) == 5
    await asyncio.sleep(0)
    assert [(e.step, e.kind) for e in events] == [("provider", "skipped")]


async def test_cancelled_event_and_scope_ids(pipeline: Pipeline) -> None:
    events = record(pipeline)
    started = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        started.set()
        await asyncio.Event().wait()
        return 1

    async with pipeline.scope() as scope:
        task = asyncio.create_task(pipeline.resource("slow"))
        await asyncio.wait_for(started.wait(), 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert [e.kind for e in events] == ["started", "cancelled"]
    assert {e.scope for e in events} == {scope.id}
    assert events[1].elapsed is not None


async def test_no_events_are_built_without_subscribers(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    import pipeliner_rx._activation as activation
    import pipeliner_rx._attempt as attempt

    class Counting(StepEvent):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(args)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(activation, "StepEvent", Counting)  # skipped, succeeded
    monkeypatch.setattr(attempt, "StepEvent", Counting)  # started, failed, cancelled

    @pipeline.step(provides="a")
    async def make_a() -> int:
        return 1

    assert await make_a() == 1
    assert built == []
    events = record(pipeline)
    pipeline.reset()
    assert await make_a() == 1
    assert len(built) == 2 and len(events) == 2


async def test_timeout_fails_the_step_within_a_small_margin(pipeline: Pipeline) -> None:
    cancelled = asyncio.Event()

    @pipeline.step(provides="v", timeout=0.1)
    async def stuck() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    start = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"`stuck`.*0\.1"):
        await asyncio.wait_for(stuck(), 5)
    elapsed = time.perf_counter() - start
    assert 0.09 <= elapsed < 0.6
    assert cancelled.is_set()


async def test_own_timeout_error_of_a_step_is_not_rewritten(pipeline: Pipeline) -> None:
    @pipeline.step(provides="v", timeout=5)
    async def raises() -> int:
        raise TimeoutError("upstream service timed out")

    with pytest.raises(TimeoutError, match="upstream service"):
        await asyncio.wait_for(raises(), 1)


async def test_retries_count_attempts(pipeline: Pipeline) -> None:
    events = record(pipeline)
    attempts: list[int] = []

    @pipeline.step(provides="flaky", retries=2, retry_delay=0.01)
    async def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return len(attempts)

    assert await asyncio.wait_for(flaky(), 1) == 3
    assert [(e.kind, e.attempt) for e in events] == [
        ("started", 1),
        ("failed", 1),
        ("started", 2),
        ("failed", 2),
        ("started", 3),
        ("succeeded", 3),
    ]


async def test_retries_exhausted_raise_the_last_error(pipeline: Pipeline) -> None:
    attempts: list[int] = []

    @pipeline.step(provides="bad", retries=1)
    async def bad() -> int:
        attempts.append(1)
        raise ConnectionError(f"attempt {len(attempts)}")

    with pytest.raises(ConnectionError, match="attempt 2") as info:
        await asyncio.wait_for(bad(), 1)
    assert attempts == [1, 1]
    assert any("2 attempts" in note for note in info.value.__notes__)


async def test_timeouts_are_retried(pipeline: Pipeline) -> None:
    attempts: list[int] = []

    @pipeline.step(provides="v", timeout=0.05, retries=1)
    async def slow_first() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(10)
        return 7

    assert await asyncio.wait_for(slow_first(), 2) == 7
    assert len(attempts) == 2


async def test_cancellation_is_not_retried(pipeline: Pipeline) -> None:
    attempts: list[int] = []
    started = asyncio.Event()

    @pipeline.step(provides="v", retries=5)
    async def forever() -> int:
        attempts.append(1)
        started.set()
        await asyncio.Event().wait()
        return 1

    task = asyncio.create_task(pipeline.resource("v"))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert attempts == [1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"timeout": 0}, "timeout"), ({"retries": -1}, "retries"), ({"retry_delay": -1}, "delay")],
)
def test_bad_retry_settings_are_value_errors(
    pipeline: Pipeline, kwargs: dict[str, float], match: str
) -> None:
    async def f() -> None:
        return None

    with pytest.raises(ValueError, match=match):
        pipeline.step(provides="x", **kwargs)(f)  # type: ignore[call-overload]
