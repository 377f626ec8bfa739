"""Eager step starts (Python 3.12+, ``PIPELINER_EAGER_START=1``) keep every rule.

Each scenario runs on a loop of its own with the default task factory and the engine's eager
start switched on, so it holds whether or not the suite runs with ``--eager-tasks``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers import add_step
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeliner_rx import Pipeline, _starts

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_start is 3.12+")
WAIT = 5


@pytest.fixture(autouse=True)
def eager_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_starts, "EAGER_START", True)
    yield


def run_plain(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main`` on a new loop with the default task factory, bounded."""

    async def bounded() -> Any:
        assert asyncio.get_running_loop().get_task_factory() is None
        return await asyncio.wait_for(main(), WAIT)

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(bounded())


def test_a_step_failing_at_once_reaches_its_dependents_caller() -> None:
    async def main() -> None:
        pipeline = Pipeline()

        @pipeline.step(provides="a")
        async def make_a() -> int:
            raise RuntimeError("before any await")

        @pipeline.step()
        async def use(a: int) -> int:
            return a

        with pytest.raises(RuntimeError, match="before any await"):
            await use()

    run_plain(main)


def test_a_dependent_never_sees_half_an_emission() -> None:
    async def main() -> list[str]:
        pipeline = Pipeline()
        log: list[str] = []

        @pipeline.step(provides=("a", "b"))
        async def pair() -> tuple[int, int]:
            log.append("pair")
            return 1, 2

        @pipeline.step(provides="c")
        async def first_only(a: int) -> int:
            log.append(f"b present: {pipeline.resource_ready('b')}")
            return a + int(await pipeline.resource("b"))

        assert await pipeline.resource("c") == 3
        return log

    assert run_plain(main) == ["pair", "b present: True"]


def test_a_push_is_never_seen_half_applied() -> None:
    async def main() -> None:
        pipeline = Pipeline()
        seen: list[bool] = []

        @pipeline.step(provides="c")
        async def both(a: int) -> int:
            seen.append(pipeline.resource_ready("b"))
            return a

        waiter = asyncio.create_task(pipeline.resource("c"))
        await asyncio.sleep(0)
        pipeline.add_environment_resources(a=1, b=2)
        assert await waiter == 1
        assert seen == [True]

    run_plain(main)


@settings(max_examples=10, deadline=None)
@given(length=st.integers(1_000, 3_000))
def test_a_long_chain_of_steps_that_never_suspend_starts_without_recursion(length: int) -> None:
    async def main() -> Any:
        pipeline = Pipeline()
        gate = asyncio.Event()

        @pipeline.step(provides="r0")
        async def first() -> int:
            await gate.wait()
            return 0

        for level in range(1, length):

            async def link(**kwargs: int) -> int:
                (value,) = kwargs.values()
                return value + 1

            add_step(pipeline, f"s{level}", [f"r{level - 1}"], f"r{level}", link)
        caller = asyncio.create_task(pipeline.resource(f"r{length - 1}"))
        await asyncio.sleep(0)
        gate.set()
        return await caller

    assert run_plain(main) == length - 1


def test_a_step_runs_in_a_task_of_its_own_from_its_first_line() -> None:
    async def main() -> None:
        pipeline = Pipeline()
        caller = asyncio.current_task()
        tasks: list[asyncio.Task[Any] | None] = []

        @pipeline.step(provides="x")
        async def step() -> int:
            tasks.append(asyncio.current_task())
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):  # acts on the step's task, not the caller
                    await asyncio.Event().wait()
            return 1

        assert await step() == 1
        assert tasks[0] is not None and tasks[0] is not caller

    run_plain(main)


def test_a_step_that_resets_its_store_at_once_is_cancelled() -> None:
    async def main() -> None:
        pipeline = Pipeline()
        reached: list[str] = []

        @pipeline.step(provides="x")
        async def resets() -> int:
            pipeline.reset()  # cancels the active steps, this one included
            await asyncio.sleep(0)
            reached.append("after the reset")
            return 1

        with pytest.raises(Exception):  # noqa: B017  # its caller hears it was stopped
            await pipeline.resource("x")
        await asyncio.sleep(0.01)
        assert reached == []

    run_plain(main)


def test_a_steps_success_is_announced_before_its_dependents_start() -> None:
    async def main() -> list[tuple[str, str]]:
        pipeline = Pipeline()
        events: list[tuple[str, str]] = []
        subscription = pipeline.events.subscribe(lambda e: events.append((e.step, e.kind)))

        @pipeline.step(provides="a")
        async def first() -> int:
            return 1

        @pipeline.step(provides="b")
        async def second(a: int) -> int:
            return a + 1

        assert await pipeline.resource("b") == 2
        subscription.dispose()
        return events

    assert run_plain(main) == [
        ("first", "started"),
        ("first", "succeeded"),
        ("second", "started"),
        ("second", "succeeded"),
    ]
