"""Streams, events, plans, scopes and executors as users write them; checked, never run.

See user_steps.py for how lines that must fail are asserted.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, assert_type

import distributed
import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops

import pipeliner_rx
from pipeliner_rx import EventKind, Pipeline, Plan, Scope, StepEvent, StepExecutor

pipeline = Pipeline()


@pipeline.step(provides="total")
async def add(x: int, y: int) -> int:
    return x + y


# -- observe, feed, compute piped from a typed stream ------------------------------------------


def x_of(item: dict[str, int]) -> int:
    return item["x"]


def streams(requests: Observable[dict[str, int]]) -> None:
    totals = requests.pipe(pipeline.compute("total", max_concurrency=4))
    assert_type(totals, Observable[Any])
    pairs = requests.pipe(pipeline.compute(add, "x"))
    assert_type(pairs, Observable[Any])
    # One stream per item, so that a bad item does not end the whole stream.
    operator = pipeline.compute(add)
    kept = requests.pipe(
        ops.concat_map(
            lambda item: reactivex.just(item).pipe(
                operator, ops.catch(lambda error, _: reactivex.just(-1))
            )
        )
    )
    kept.subscribe(print)
    observed = pipeline.observe("total")
    assert_type(observed, Observable[Any])
    labels: Observable[str] = observed.pipe(ops.map(str))
    subscription = pipeline.feed("x", requests.pipe(ops.map(x_of)))
    assert_type(subscription, abc.DisposableBase)
    subscription.dispose()
    labels.subscribe(print)


def not_a_stream() -> None:
    reactivex.just(1).pipe(pipeline.observe)  # type: ignore[arg-type]
    pipeline.feed("x", [1, 2])  # type: ignore[arg-type]
    pipeline.compute("total", max_concurrency="4")  # type: ignore[arg-type]


async def awaited() -> None:
    value = await pipeline.observe("total")
    print(value)


# -- events -----------------------------------------------------------------------------------


def on_event(event: StepEvent) -> None:
    kind: EventKind = event.kind
    elapsed: float | None = event.elapsed
    error: BaseException | None = event.error
    scope: int = event.scope
    attempt: int = event.attempt
    if event.kind == "finished":  # type: ignore[comparison-overlap]
        print("never: no such kind")
    print(kind, elapsed, error, scope, attempt, event.step)


def on_number(number: int) -> None:
    print(number)


subscription = pipeline.events.subscribe(on_event)
assert_type(pipeline.events, Observable[StepEvent])
pipeline.events.subscribe(on_number)  # type: ignore[arg-type]
subscription.dispose()


# -- plans ------------------------------------------------------------------------------------

plan = pipeline.plan("total", x=1)
assert_type(plan, Plan)
runs: list[str] = plan.runs
missing: list[str] = plan.missing
reasons: dict[str, str] = plan.reasons
print(str(plan), pipeline.plan(add), pipeline.to_mermaid(["total"]), pipeline.to_dot(add))
plan.runs.append(3)  # type: ignore[arg-type]


# -- scopes -----------------------------------------------------------------------------------


async def request(y: int) -> int:
    async with pipeline.scope(y=y) as scope:
        assert_type(scope, Scope)
        scope.add_environment_resources(x=1)
        return await add()


def sync_scope() -> None:
    with pipeliner_rx.scope(x=1) as scope:
        assert_type(scope, Scope)


# -- executors --------------------------------------------------------------------------------

threads: StepExecutor = concurrent.futures.ThreadPoolExecutor(4)
processes: StepExecutor = concurrent.futures.ProcessPoolExecutor(2)
Pipeline(executor=threads)
Pipeline(executor=processes)
Pipeline(executor=None)


def on_dask(client: distributed.Client) -> Pipeline:
    return Pipeline(executor=client)


not_an_executor: StepExecutor = "threads"  # type: ignore[assignment]
