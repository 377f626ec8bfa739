"""Concurrency: shared providers run once, independent steps overlap, no level-by-level waits."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
from helpers import add_step, blocking_step

from pipeliner_rx import CycleError, Pipeline


async def test_concurrent_calls_share_a_provider(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @pipeline.step(provides="shared")
    async def provider() -> int:
        runs.append(1)
        started.set()
        await release.wait()
        return 5

    @pipeline.step()
    async def one(shared: int) -> int:
        return shared + 1

    @pipeline.step()
    async def two(shared: int) -> int:
        return shared + 2

    tasks = [asyncio.create_task(c) for c in (one(), two(), one(), pipeline.resource("shared"))]
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 1) == [6, 7, 6, 5]
    assert runs == [1]


async def test_concurrent_calls_of_a_providing_step_run_it_once(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step(provides="v")
    async def v() -> int:
        runs.append(1)
        await asyncio.sleep(0.01)
        return 1

    # gather gives a list at run time (typeshed says tuple)
    assert await asyncio.wait_for(asyncio.gather(v(), v(), v()), 1) == [1, 1, 1]  # type: ignore[comparison-overlap]
    assert runs == [1]


async def test_independent_steps_overlap(pipeline: Pipeline) -> None:
    names = [f"r{i}" for i in range(50)]
    for i, name in enumerate(names):

        async def fn() -> int:
            await asyncio.sleep(0.1)
            return 1

        add_step(pipeline, f"sleep{i}", [], name, fn)

    async def total(**kw: int) -> int:
        return sum(kw.values())

    target = add_step(pipeline, "total", names, None, total)
    start = time.perf_counter()
    assert await asyncio.wait_for(target(), 5) == 50
    assert time.perf_counter() - start < 0.6  # 50 x 0.1 s in sequence would be 5 s


async def test_step_starts_when_its_own_inputs_are_ready(pipeline: Pipeline) -> None:
    slow_release = asyncio.Event()
    quick_done = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        await slow_release.wait()
        return 1

    @pipeline.step(provides="fast")
    async def fast() -> int:
        return 2

    @pipeline.step(provides="after_fast")
    async def after_fast(fast: int) -> int:
        quick_done.set()  # runs while `slow`, a step of the same level, is still pending
        return fast * 10

    @pipeline.step()
    async def join(slow: int, after_fast: int) -> int:
        return slow + after_fast

    task = asyncio.create_task(join())
    await asyncio.wait_for(quick_done.wait(), 1)
    assert not task.done()
    slow_release.set()
    assert await asyncio.wait_for(task, 1) == 21


async def test_cancelling_only_caller_cancels_running_step(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "x", "forever")

    task = asyncio.create_task(pipeline.resource("x"))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert not pipeline.resource_ready("x")


async def test_cancelling_one_of_two_callers_keeps_step_running(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @pipeline.step(provides="x")
    async def work() -> int:
        runs.append(1)
        started.set()
        await release.wait()
        return 3

    @pipeline.step()
    async def use(x: int) -> int:
        return x

    first = asyncio.create_task(use())
    second = asyncio.create_task(pipeline.resource("x"))
    await asyncio.wait_for(started.wait(), 1)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(second, 1) == 3
    assert runs == [1]


async def test_cancelled_resources_are_computed_afresh(pipeline: Pipeline) -> None:
    runs: list[int] = []
    started = asyncio.Event()
    gate = [True]

    @pipeline.step(provides="x")
    async def work() -> int:
        runs.append(1)
        started.set()
        if gate[0]:
            await asyncio.Event().wait()
        return 4

    task = asyncio.create_task(pipeline.resource("x"))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate[0] = False
    assert await asyncio.wait_for(pipeline.resource("x"), 1) == 4
    assert runs == [1, 1]


async def test_sync_steps_run_off_the_loop(pipeline: Pipeline) -> None:
    import threading

    @pipeline.step(provides="where")
    def where() -> int:
        return threading.get_ident()

    assert await asyncio.wait_for(where(), 1) != threading.get_ident()


def chain(pipeline: Pipeline, n: int) -> Any:
    async def first() -> int:
        return 0

    add_step(pipeline, "s0", [], "r0", first)
    for i in range(1, n):

        async def nxt(**kw: int) -> int:
            (value,) = kw.values()
            return value + 1

        add_step(pipeline, f"s{i}", [f"r{i - 1}"], f"r{i}", nxt)
    return pipeline.steps[-1]


async def test_chain_of_10000_steps_at_default_recursion_limit(pipeline: Pipeline) -> None:
    assert sys.getrecursionlimit() == 1000
    n = 10_000
    last = chain(pipeline, n)
    assert await asyncio.wait_for(last(), 30) == n - 1


async def test_failure_at_the_root_of_a_10000_chain_reaches_the_caller(
    pipeline: Pipeline,
) -> None:
    n = 10_000
    last = chain(pipeline, n)

    async def broken() -> int:
        raise ZeroDivisionError("root failed")

    add_step(pipeline, "s0", [], "r0", broken)  # replaces the first step of the chain
    with pytest.raises(ZeroDivisionError, match="root failed"):
        await asyncio.wait_for(last(), 30)


async def test_cycle_check_in_a_deep_graph(pipeline: Pipeline) -> None:
    n = 5_000

    async def closing(**kw: int) -> int:
        return 0

    add_step(pipeline, "s0", [f"r{n - 1}"], "r0", closing)
    for i in range(1, n):

        async def nxt(**kw: int) -> int:
            return 0

        add_step(pipeline, f"s{i}", [f"r{i - 1}"], f"r{i}", nxt)
    with pytest.raises(CycleError):
        await asyncio.wait_for(pipeline.resource(f"r{n - 1}"), 10)
