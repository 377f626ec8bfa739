"""Compiled plans: one walk per target and store state, reused, and what `Pipeline.plan` shows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dags import EXAMPLES, Dag, Log, Target, build, dags, seedings, store_id
from hypothesis import given
from hypothesis import strategies as st
from test_core import make_seed

import pipeliner_rx._plans
from pipeliner_rx import MissingResourceError, Pipeline


def seed_pipeline() -> tuple[Pipeline, list[str]]:
    """The seed pipeline of `test_core` on a fresh pipeline, and the log of its calls."""
    pipeline = Pipeline()
    calls: list[str] = []
    make_seed(pipeline, calls)
    return pipeline, calls


def get_division(pipeline: Pipeline) -> Any:
    return next(step for step in pipeline.steps if step.name == "get_division")


def test_the_same_state_gives_the_same_compiled_plan() -> None:
    pipeline, _ = seed_pipeline()
    plan = pipeline.plan("get_division", divisor=3)
    assert pipeline.plan("get_division", divisor=3) is plan
    # Only presence counts, not values: the walk does not depend on them.
    assert pipeline.plan("get_division", divisor=4) is plan
    # Another state is another plan.
    other = pipeline.plan("get_division", divisor=3, base=38)
    assert other is not plan
    assert other.runs == ["divide", "mod", "get_division"]
    assert plan.runs == ["base_provider", "divide", "mod", "get_division"]


def test_registering_a_step_compiles_plans_anew() -> None:
    pipeline, _ = seed_pipeline()
    plan = pipeline.plan("get_division", divisor=3)

    @pipeline.step(provides="divisor")
    async def make_divisor() -> int:
        return 3

    fresh = pipeline.plan("get_division")
    assert fresh is not plan
    assert "make_divisor" in fresh.runs and fresh.missing == []


async def test_calls_in_fresh_scopes_compile_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, calls = seed_pipeline()
    compiled: list[Any] = []
    original = pipeliner_rx._plans.compile_walk

    def counting(*args: Any) -> Any:
        compiled.append(args)
        return original(*args)

    monkeypatch.setattr(pipeliner_rx._plans, "compile_walk", counting)
    for divisor in range(1, 51):
        async with pipeline.scope(base=38, divisor=divisor):
            got = await asyncio.wait_for(get_division(pipeline)(), 1)
            assert got == (38, 38 // divisor, 38 % divisor)
    assert len(compiled) == 1  # one walk, reused by 50 calls
    assert calls.count("divide") == 50 and "base_provider" not in calls
    # And the plan shown for that state is the one the calls used.
    async with pipeline.scope(base=38, divisor=1):
        pipeline.plan("get_division")
    assert len(compiled) == 1


async def test_a_plan_with_missing_inputs_raises_on_each_call() -> None:
    pipeline, calls = seed_pipeline()
    assert pipeline.plan("get_division").missing == ["divisor"]
    for _ in range(2):
        async with pipeline.scope():
            with pytest.raises(MissingResourceError, match="`divisor`"):
                await asyncio.wait_for(get_division(pipeline)(), 1)
    assert calls == []


async def test_active_steps_are_shared_not_made_again() -> None:
    # A second demand in the same store reuses the running steps of the first: the plan's
    # steps that are active already are not activated twice.
    pipeline, calls = seed_pipeline()
    gate = asyncio.Event()

    @pipeline.step(provides="late")
    async def slow(result: int) -> int:
        calls.append("slow")
        await gate.wait()
        return result + 1

    @pipeline.step
    async def both(late: int, modulus: int) -> tuple[int, int]:
        return late, modulus

    async with pipeline.scope(divisor=3):
        first = asyncio.ensure_future(pipeline.resource("late"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(both())
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.wait_for(first, 1) == 8
        assert await asyncio.wait_for(second, 1) == (8, 2)
    assert calls.count("slow") == 1 and calls.count("divide") == 1


async def test_the_plan_cache_stays_bounded() -> None:
    pipeline, _ = seed_pipeline()
    for i in range(1500):  # a service asking for ever new names
        with pytest.raises(TimeoutError):
            await pipeline.resource(f"name{i}", timeout=0)
    assert 0 < len(pipeline._engine.plans) <= 1024


@st.composite
def planned_calls(draw: st.DrawFn) -> tuple[Dag, dict[str, Any], Target]:
    dag = draw(dags(max_steps=30))
    seeds = draw(seedings(dag))
    target: Target = ("step", draw(st.sampled_from([node.name for node in dag.nodes])))
    return dag, seeds, target


@EXAMPLES
@given(planned_calls())
def test_a_call_runs_exactly_its_plan(case: tuple[Dag, dict[str, Any], Target]) -> None:
    """Whatever the graph and the store's state, a call runs the steps its plan lists (each
    once), or raises `MissingResourceError` for exactly the plan's missing resources."""
    dag, seeds, (_, name) = case
    log: Log = []
    pipeline, steps = build(dag, log)

    async def main() -> None:
        async with pipeline.scope(**seeds) as scope:
            plan = pipeline.plan(name)
            assert pipeline.plan(name) is plan
            try:
                await steps[name]()
            except MissingResourceError as exc:
                assert plan.missing and {n for n, _ in exc.missing} == set(plan.missing)
                assert [n for where, n in log if where == scope.id] == []
                return
            assert not plan.missing
            ran = [n for where, n in log if where == scope.id]
            assert sorted(ran) == sorted(plan.runs)
            assert len(ran) == len(set(ran))
            assert store_id(pipeline) == scope.id

    asyncio.run(asyncio.wait_for(main(), 10))
