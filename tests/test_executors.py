"""Plain `def` steps run on executors, never on the loop's thread."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import remote_steps
from helpers import add_step

from pipeliner_rx import Pipeline, StepPicklingError


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def remote(process_pool: ProcessPoolExecutor) -> Iterator[Pipeline]:
    with remote_steps.running_on(process_pool) as pipeline:
        yield pipeline


async def test_blocking_sync_step_leaves_the_loop_free(pipeline: Pipeline) -> None:
    released = threading.Event()

    @pipeline.step(provides="blocked")
    def blocking() -> bool:
        # Only an async step running meanwhile on the loop can release this.
        return released.wait(5)

    @pipeline.step(provides="free")
    async def on_the_loop() -> str:
        await asyncio.sleep(0.01)
        released.set()
        return "ran"

    @pipeline.step()
    async def both(blocked: bool, free: str) -> tuple[bool, str]:
        return blocked, free

    assert await asyncio.wait_for(both(), 5) == (True, "ran")


async def test_sync_steps_overlap_on_a_thread_pool() -> None:
    with ThreadPoolExecutor(8) as pool:
        pipeline = Pipeline(executor=pool)
        names = [f"r{i}" for i in range(8)]
        for i, name in enumerate(names):

            def block() -> int:
                time.sleep(0.2)
                return 1

            add_step(pipeline, f"block{i}", [], name, block)

        async def total(**kw: int) -> int:
            return sum(kw.values())

        target = add_step(pipeline, "total", names, None, total)
        start = time.perf_counter()
        assert await asyncio.wait_for(target(), 5) == 8
        assert time.perf_counter() - start < 0.8  # in sequence: 1.6 s


async def test_step_executor_overrides_the_pipeline_default() -> None:
    with (
        ThreadPoolExecutor(1, thread_name_prefix="pipeline-default") as default,
        ThreadPoolExecutor(1, thread_name_prefix="own-pool") as own,
    ):
        pipeline = Pipeline(executor=default)

        @pipeline.step(provides="a")
        def a() -> str:
            return threading.current_thread().name

        @pipeline.step(provides="b", executor=own)
        def b() -> str:
            return threading.current_thread().name

        assert (await a()).startswith("pipeline-default")
        assert (await b()).startswith("own-pool")


async def test_process_pool_runs_the_step_in_another_process(remote: Pipeline) -> None:
    assert await asyncio.wait_for(remote_steps.worker_pid(), 30) != os.getpid()
    assert await asyncio.wait_for(remote_steps.sum_squares(n=4), 30) == 14
    assert await asyncio.wait_for(remote.resource("squares"), 30) == 14


async def test_remote_exception_keeps_its_type(remote: Pipeline) -> None:
    with pytest.raises(KeyError, match="no entry 3") as info:
        await asyncio.wait_for(remote_steps.broken(n=3), 30)
    assert any("`broken`" in note for note in info.value.__notes__)


async def test_unshippable_step_names_the_step(process_pool: ProcessPoolExecutor) -> None:
    pipeline = Pipeline(executor=process_pool)

    @pipeline.step(provides="local")
    def local_step() -> int:
        return 1

    with pytest.raises(StepPicklingError) as info:
        await asyncio.wait_for(local_step(), 30)
    assert info.value.step == "local_step"
    assert "`local_step`" in str(info.value) and "module level" in str(info.value)
    assert isinstance(info.value, pickle.PicklingError)


def test_steps_pickle_by_reference() -> None:
    for step in (remote_steps.worker_pid, remote_steps.report):
        assert pickle.loads(pickle.dumps(step)) is step


def test_bad_executor_is_a_type_error(pipeline: Pipeline) -> None:
    with pytest.raises(TypeError, match="executor"):
        Pipeline(executor="threads")  # type: ignore[arg-type]

    def f() -> None:
        return None

    with pytest.raises(TypeError, match="`f`"):
        pipeline.step(executor=object())(f)  # type: ignore[call-overload]
