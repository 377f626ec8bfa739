"""Steps as users write them. Checked by ``mypy --strict tests`` (see .ci/run), never run.

A line that must not type-check carries ``# type: ignore[code]``: strict mode warns about unused
ignores, so if the library's types stop rejecting it, the check fails.
"""

from __future__ import annotations

from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, assert_type

import pipeliner_rx
from pipeliner_rx import Pipeline, Step, step

pipeline = Pipeline()


# -- the module-level decorator, bare and with arguments, on async def and on def ------------


@step
async def notify(total: int) -> None:
    print(total)


@step
def audit(total: int) -> str:
    return f"total={total}"


@step(provides="total")
async def add(x: int, y: int = 2) -> int:
    return x + y


@step(provides=("low", "high"), retries=2, retry_delay=0.1, timeout=5.0)
def bounds(values: list[int]) -> tuple[int, int]:
    return min(values), max(values)


assert_type(notify, Step[None])
assert_type(audit, Step[str])
assert_type(add, Step[int])
assert_type(bounds, Step[tuple[int, int]])
assert_type(add.provides, tuple[str, ...])
assert_type(add.name, str)


# -- the Pipeline method, bare and with arguments, on async def and on def -------------------


@pipeline.step
async def report(doubled: int) -> str:
    return str(doubled)


@pipeline.step
def log_it(doubled: int) -> None:
    print(doubled)


@pipeline.step(provides="doubled")
async def double(x: int) -> int:
    return 2 * x


@pipeline.step(provides="halved", executor=ThreadPoolExecutor(2))
def halve(x: int) -> float:
    return x / 2


assert_type(report, Step[str])
assert_type(log_it, Step[None])
assert_type(double, Step[int])
assert_type(halve, Step[float])

decorator = pipeline.step(provides="tripled")
assert_type(decorator, pipeliner_rx.StepDecorator)


@decorator
async def triple(x: int) -> int:
    return 3 * x


assert_type(triple, Step[int])


# -- calling steps ----------------------------------------------------------------------------


async def calls() -> None:
    assert_type(await assert_type(add(x=1), Coroutine[Any, Any, int]), int)
    assert_type(await halve(x=3), float)
    total: int = await add(x=1, y=3)
    low, high = await bounds(values=[3, 1, 2])
    assert_type(low, int)
    text = await report()
    assert_type(text, str)
    assert_type(await notify(), None)
    value: Any = await pipeliner_rx.resource("total")
    ready: bool = pipeliner_rx.resource_ready("total")
    pipeliner_rx.add_environment_resources(x=1, y=2)
    print(total, high, value, ready)


# -- what must not type-check -----------------------------------------------------------------


async def mistakes() -> None:
    wrong: str = await add(x=1)  # type: ignore[assignment]
    await add(1)  # type: ignore[call-arg]
    await double(x=1).upper()  # type: ignore[attr-defined]
    print(wrong)


step(provides=3)  # type: ignore[call-overload]
pipeline.step(provides="x", retries="2")  # type: ignore[call-overload]
Pipeline(executor="threads")  # type: ignore[arg-type]
pipeline.step(provides="y", executor=object())  # type: ignore[call-overload]
