"""A finished scoped run leaves nothing for the cyclic garbage collector."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pipeliner_rx import Pipeline, Step


def seed_pipeline() -> tuple[Pipeline, Step[Any]]:
    pipeline = Pipeline()

    @pipeline.step(provides="base")
    async def base_provider() -> int:
        return 23

    @pipeline.step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        return base // divisor

    @pipeline.step(provides="modulus")
    async def mod(base: int, divisor: int) -> int:
        return base % divisor

    @pipeline.step(provides=("res_times_mod", "res_minus_mod"))
    async def get_resmod(result: int, modulus: int) -> tuple[int, int]:
        return result * modulus, result - modulus

    @pipeline.step()
    async def get_division(base: int, result: int, modulus: int) -> tuple[int, int, int]:
        return base, result, modulus

    return pipeline, get_division


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("with_multi_output", [False, True])
def test_scoped_runs_leave_no_reference_cycles(
    collector_off: None, with_multi_output: bool
) -> None:
    pipeline, get_division = seed_pipeline()
    get_resmod = pipeline.steps[3]

    async def main() -> int:
        pipeline.add_environment_resources(base=38)
        for _ in range(10):  # warm up: first-use caches are not garbage
            async with pipeline.scope(divisor=3):
                await get_division()
        gc.collect()
        for _ in range(1_000):
            async with pipeline.scope(divisor=3):
                await asyncio.wait_for(get_division(), 5)
                if with_multi_output:
                    await asyncio.wait_for(get_resmod(), 5)
        return gc.collect()

    unreachable = asyncio.run(main())
    assert unreachable < 1_000, f"{unreachable} objects in reference cycles after 1,000 runs"
