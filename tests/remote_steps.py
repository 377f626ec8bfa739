"""Module-level sync steps, importable by worker processes (process pools, Dask workers)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeliner_rx import Pipeline

pipeline = Pipeline()


@contextmanager
def running_on(executor: Any) -> Iterator[Pipeline]:
    """This module's pipeline with ``executor`` and an empty store, restored afterwards."""
    pipeline.executor = executor
    pipeline.reset()
    try:
        yield pipeline
    finally:
        pipeline.executor = None
        pipeline.reset()


@pipeline.step(provides="pid")
def worker_pid() -> int:
    return os.getpid()


@pipeline.step(provides="squares")
def sum_squares(n: int) -> int:
    return sum(i * i for i in range(n))


@pipeline.step(provides="broken")
def broken(n: int) -> int:
    raise KeyError(f"no entry {n}")


@pipeline.step(provides="slept")
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline.step(provides="worker")
def which_worker(squares: int) -> str:
    from distributed import get_worker

    return get_worker().address


@pipeline.step()
async def report(squares: int, worker: str) -> str:
    return f"{squares} on {worker}"
