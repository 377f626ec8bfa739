"""Sync steps on a Dask cluster: a LocalCluster with two worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import remote_steps

from pipeliner_rx import Pipeline

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as sync_client:
        yield sync_client


@pytest.fixture
def remote(client: Any) -> Iterator[Pipeline]:
    with remote_steps.running_on(client) as pipeline:
        yield pipeline


async def test_steps_run_on_cluster_workers(remote: Pipeline, cluster: Any) -> None:
    workers = set(cluster.scheduler_info["workers"])
    text = await asyncio.wait_for(remote_steps.report(n=10), 60)
    squares, worker = text.split(" on ")
    assert squares == "285"
    assert worker in workers


async def test_remote_exceptions_keep_their_type(remote: Pipeline) -> None:
    with pytest.raises(KeyError, match="no entry 7"):
        await asyncio.wait_for(remote_steps.broken(n=7), 60)


async def test_async_client_runs_steps_without_blocking(cluster: Any) -> None:
    async with distributed.Client(cluster.scheduler_address, asynchronous=True) as client:
        with remote_steps.running_on(client):
            assert await asyncio.wait_for(remote_steps.sum_squares(n=5), 60) == 30


async def test_cancelling_the_demand_cancels_the_dask_future(remote: Pipeline, client: Any) -> None:
    def tasks_on_scheduler() -> int:
        keys = client.run_on_scheduler(lambda dask_scheduler: list(map(str, dask_scheduler.tasks)))
        return sum(key.startswith("sleep_for") for key in keys)

    task = asyncio.create_task(remote_steps.sleep_for(seconds=30))
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(tasks_on_scheduler) == 0:
        assert time.monotonic() < deadline, "the step never reached the scheduler"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(tasks_on_scheduler) != 0:
        assert time.monotonic() < deadline, "the Dask future was not cancelled"
        await asyncio.sleep(0.05)


def test_local_steps_ship_by_value_to_dask(client: Any) -> None:
    pipeline = Pipeline(executor=client)

    @pipeline.step(provides="local")
    def local_step(x: int) -> int:
        return x * 3

    assert asyncio.run(asyncio.wait_for(local_step(x=2), 60)) == 6
