"""Pushing resources from threads other than the event loop's."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipeliner_rx import Pipeline, ResourceConflictError


async def test_push_from_another_thread_wakes_waiters_on_the_loop(pipeline: Pipeline) -> None:
    loop_thread = threading.get_ident()
    woke_on: list[int] = []

    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        woke_on.append(threading.get_ident())
        return 2 * x

    waiter = asyncio.create_task(pipeline.resource("double"))
    await asyncio.sleep(0)
    thread = threading.Thread(target=pipeline.add_environment_resources, kwargs={"x": 4})
    thread.start()
    assert await asyncio.wait_for(waiter, 1) == 8
    await asyncio.to_thread(thread.join, 1)
    assert woke_on == [loop_thread]


async def test_push_from_another_thread_returns_once_applied(pipeline: Pipeline) -> None:
    pipeline.add_environment_resources(warm=True)  # binds the store to this loop

    def push_and_check() -> bool:
        pipeline.add_environment_resources(y=1)
        return pipeline.resource_ready("y")

    assert await asyncio.wait_for(asyncio.to_thread(push_and_check), 1)


async def test_conflict_from_another_thread_raises_in_that_thread(pipeline: Pipeline) -> None:
    pipeline.add_environment_resources(z=1)
    await pipeline.resource("z")

    def push() -> None:
        pipeline.add_environment_resources(z=2)

    with pytest.raises(ResourceConflictError):
        await asyncio.wait_for(asyncio.to_thread(push), 1)
    assert await pipeline.resource("z") == 1


async def test_many_threads_pushing_at_once_set_every_value(pipeline: Pipeline) -> None:
    names = [f"r{i}" for i in range(40)]

    waiters = [asyncio.create_task(pipeline.resource(n)) for n in names]
    await asyncio.sleep(0)
    threads = [
        threading.Thread(target=pipeline.add_environment_resources, kwargs={n: i})
        for i, n in enumerate(names)
    ]
    for t in threads:
        t.start()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 2) == list(range(40))
    for t in threads:
        await asyncio.to_thread(t.join, 1)
