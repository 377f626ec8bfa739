"""Scopes: private stores that follow asyncio tasks, seeded from the environment."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import blocking_step

import pipeliner_rx
from pipeliner_rx import Pipeline, PipelineError, Scope, Step


def seed(pipeline: Pipeline, runs: list[str]) -> Step[tuple[int, int]]:
    @pipeline.step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        runs.append("divide")
        await asyncio.sleep(0.01)
        return base // divisor

    @pipeline.step()
    async def get_division(base: int, result: int) -> tuple[int, int]:
        return base, result

    return get_division


async def test_concurrent_scopes_with_different_values_give_different_answers(
    pipeline: Pipeline,
) -> None:
    runs: list[str] = []
    get_division = seed(pipeline, runs)
    pipeline.add_environment_resources(base=100)

    async def handle(divisor: int) -> tuple[int, int]:
        async with pipeline.scope(divisor=divisor):
            return await get_division()

    results = await asyncio.wait_for(asyncio.gather(*(handle(d) for d in range(1, 21))), 2)
    assert results == [(100, 100 // d) for d in range(1, 21)]
    assert len(runs) == 20
    # Nothing computed in a scope leaks into the pipeline's store.
    assert not pipeline.resource_ready("result")
    assert not pipeline.resource_ready("divisor")


async def test_scope_starts_with_environment_not_computed_values(pipeline: Pipeline) -> None:
    runs: list[str] = []
    get_division = seed(pipeline, runs)
    pipeline.add_environment_resources(base=10)
    assert await get_division(divisor=2) == (10, 5)  # computes `result` in the pipeline store
    async with pipeline.scope(divisor=5) as scope:
        assert scope.resource_ready("base")
        assert not scope.resource_ready("result")
        assert await get_division() == (10, 2)
    async with pipeline.scope(base=20, divisor=5):
        assert await get_division() == (20, 4)  # scope arguments override the environment
    assert await pipeline.resource("result") == 5


async def test_scope_follows_tasks_created_inside(pipeline: Pipeline) -> None:
    runs: list[str] = []
    get_division = seed(pipeline, runs)
    with pipeline.scope(base=9, divisor=3):
        task = asyncio.create_task(get_division())
        assert await asyncio.wait_for(task, 1) == (9, 3)
    assert not pipeline.resource_ready("base")


async def test_a_closed_scope_refuses_work(pipeline: Pipeline) -> None:
    runs: list[str] = []
    get_division = seed(pipeline, runs)
    gate = asyncio.Event()

    async def later() -> Any:
        await gate.wait()
        return await get_division()

    with pipeline.scope(base=9, divisor=3) as scope:
        late = asyncio.create_task(later())  # in the scope, and outlives it
    gate.set()
    with pytest.raises(PipelineError, match="closed"):
        await asyncio.wait_for(late, 1)
    with pytest.raises(PipelineError, match="closed"):
        await asyncio.wait_for(scope.resource("base"), 1)
    assert runs == []


async def test_scope_methods_act_on_its_store(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        return 2 * x

    scope = pipeline.scope()
    waiter = asyncio.create_task(scope.resource("double"))
    await asyncio.sleep(0)
    scope.add_environment_resources(x=4)
    assert await asyncio.wait_for(waiter, 1) == 8
    assert scope.resource_ready("double") and not pipeline.resource_ready("double")
    assert await asyncio.wait_for(scope.observe("x"), 1) == 4
    assert not pipeline.resource_ready("x")


async def test_push_inside_scope_stays_in_scope(pipeline: Pipeline) -> None:
    async with pipeline.scope():
        pipeline.add_environment_resources(local=1)
        assert pipeline.resource_ready("local")
    assert not pipeline.resource_ready("local")
    async with pipeline.scope() as other:
        assert not other.resource_ready("local")


async def test_leaving_async_scope_cancels_and_waits_for_running_steps(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    finished_cleanup = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            finished_cleanup.set()
        return 1

    async with pipeline.scope() as scope:
        waiter = asyncio.create_task(pipeline.resource("slow"))
        await asyncio.wait_for(started.wait(), 1)
    assert finished_cleanup.is_set()  # `async with` waited for the cancellation
    with pytest.raises(PipelineError, match="closed"):
        await asyncio.wait_for(waiter, 1)
    assert not scope.resource_ready("slow")


async def test_leaving_sync_scope_cancels_running_steps(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "slow", "slow")

    with pipeline.scope():
        task = asyncio.create_task(pipeline.resource("slow"))
        await asyncio.wait_for(started.wait(), 1)
    await asyncio.wait_for(cancelled.wait(), 1)
    with pytest.raises(PipelineError):
        await asyncio.wait_for(task, 1)


async def test_module_level_scope_uses_default_pipeline() -> None:
    @pipeliner_rx.step(provides="y")
    async def y(x: int) -> int:
        return x + 1

    async with pipeliner_rx.scope(x=1) as scope:
        assert isinstance(scope, Scope)
        assert await y() == 2
        assert await pipeliner_rx.resource("y") == 2
    assert not pipeliner_rx.resource_ready("y")


async def test_scopes_of_two_pipelines_are_independent() -> None:
    a, b = Pipeline(), Pipeline()

    @a.step(provides="v")
    async def va(x: int) -> str:
        return f"a{x}"

    @b.step(provides="v")
    async def vb(x: int) -> str:
        return f"b{x}"

    async with a.scope(x=1):
        async with b.scope(x=2):
            assert await va() == "a1"
            assert await vb() == "b2"
