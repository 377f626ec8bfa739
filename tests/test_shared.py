"""Shared steps run once for every scope, nested scopes start from the enclosing scope, and a
wait for a resource can be bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import blocking_step
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeliner_rx import MissingResourceError, Pipeline, ScopeClosedError

WAIT = 5


def shared_model(pipeline: Pipeline, runs: list[str], gate: asyncio.Event | None = None) -> None:
    """``model`` (shared) from the environment's ``path``; ``answer`` per scope."""

    @pipeline.step(provides="model", shared=True)
    async def load_model(path: str) -> str:
        runs.append(path)
        if gate is not None:
            await gate.wait()
        return f"model({path})"

    @pipeline.step(provides="answer")
    async def answer(model: str, question: int) -> str:
        return f"{model}:{question}"


@settings(max_examples=30, deadline=None)
@given(questions=st.lists(st.integers(), min_size=1, max_size=12))
def test_concurrent_scopes_run_a_shared_step_once(questions: list[int]) -> None:
    async def main() -> None:
        pipeline = Pipeline()
        runs: list[str] = []
        gate = asyncio.Event()
        shared_model(pipeline, runs, gate)
        pipeline.add_environment_resources(path="m.bin")

        async def ask(question: int) -> Any:
            async with pipeline.scope(question=question):
                return await pipeline.resource("answer")

        tasks = [asyncio.create_task(ask(q)) for q in questions]
        await asyncio.sleep(0)
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert answers == [f"model(m.bin):{q}" for q in questions]
        assert runs == ["m.bin"]
        # The value lives in the pipeline's own store, once.
        assert pipeline.resource_ready("model")
        async with pipeline.scope(question=0):
            assert await asyncio.wait_for(pipeline.resource("answer"), WAIT) == "model(m.bin):0"
        assert runs == ["m.bin"]

    asyncio.run(main())


async def test_a_shared_step_called_in_a_scope_runs_in_the_pipeline_store(
    pipeline: Pipeline,
) -> None:
    runs: list[str] = []
    shared_model(pipeline, runs)
    pipeline.add_environment_resources(path="p")
    load_model = pipeline.steps[0]
    for _ in range(3):
        async with pipeline.scope():
            assert await asyncio.wait_for(load_model(), WAIT) == "model(p)"
    assert runs == ["p"]


async def test_a_shared_step_needing_a_scope_value_is_a_missing_resource(
    pipeline: Pipeline,
) -> None:
    runs: list[str] = []
    shared_model(pipeline, runs)
    async with pipeline.scope(path="only in the scope", question=1):
        with pytest.raises(MissingResourceError) as info:
            await asyncio.wait_for(pipeline.resource("answer"), WAIT)
    assert info.value.resource == "path"
    assert "shared" in str(info.value) and "add_environment_resources" in str(info.value)
    assert runs == []
    assert not pipeline.resource_ready("model")


async def test_a_failing_shared_step_fails_each_scope_and_reruns_later(
    pipeline: Pipeline,
) -> None:
    attempts: list[int] = []

    @pipeline.step(provides="pool", shared=True)
    async def open_pool() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database down")
        return "pool"

    @pipeline.step(provides="rows")
    async def rows(pool: str, query: str) -> str:
        return f"{pool}/{query}"

    async with pipeline.scope(query="a"):
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pipeline.resource("rows"), WAIT)
    async with pipeline.scope(query="b"):
        assert await asyncio.wait_for(pipeline.resource("rows"), WAIT) == "pool/b"
    assert len(attempts) == 2


async def test_leaving_every_scope_cancels_a_shared_step_nobody_needs(
    pipeline: Pipeline,
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @pipeline.step(provides="slow", shared=True)
    async def slow() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    async with pipeline.scope() as scope:
        waiter = asyncio.create_task(scope.resource("slow"))
        await asyncio.wait_for(started.wait(), WAIT)
    with pytest.raises(ScopeClosedError):
        await asyncio.wait_for(waiter, WAIT)
    await asyncio.wait_for(cancelled.wait(), WAIT)


def test_a_shared_step_must_provide_something(pipeline: Pipeline) -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(TypeError, match="shared"):
        pipeline.step(shared=True)(nothing)


# -- nested scopes --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    outer=st.dictionaries(st.sampled_from("abcd"), st.integers(), max_size=4),
    inner=st.dictionaries(st.sampled_from("abcd"), st.integers(), max_size=4),
)
def test_a_nested_scope_starts_from_the_enclosing_scope(
    outer: dict[str, int], inner: dict[str, int]
) -> None:
    async def main() -> None:
        pipeline = Pipeline()
        runs: list[dict[str, int]] = []

        @pipeline.step(provides="total")
        async def total(a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
            runs.append({"a": a, "b": b, "c": c, "d": d})
            return a + b + c + d

        async with pipeline.scope(**outer):
            outer_total = await asyncio.wait_for(pipeline.resource("total"), WAIT)
            async with pipeline.scope(**inner):
                seen = {**outer, **inner}
                for name, value in seen.items():
                    assert await asyncio.wait_for(pipeline.resource(name), WAIT) == value
                # Consistent with its own values: the enclosing `total` is read if nothing
                # it came from was given differently, else computed afresh.
                assert await asyncio.wait_for(pipeline.resource("total"), WAIT) == sum(
                    seen.values()
                )
                changed = any(outer.get(name) != value for name, value in inner.items())
                assert len(runs) == (2 if changed else 1)
                pipeline.add_environment_resources(extra=1)
            # What the nested scope set or computed stays inside it.
            assert not pipeline.resource_ready("extra")
            assert await asyncio.wait_for(pipeline.resource("total"), WAIT) == outer_total
        assert not pipeline.resource_ready("total")

    asyncio.run(main())


# -- bounded waits -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["pipeline", "scope", "module"])
async def test_a_bounded_wait_raises_timeout_naming_the_resource(
    pipeline: Pipeline, where: str
) -> None:
    import pipeliner_rx

    if where == "pipeline":
        wait = pipeline.resource("typo", timeout=0.05)
    elif where == "module":
        wait = pipeliner_rx.resource("typo", timeout=0.05)
    else:
        scope = pipeline.scope()
        wait = scope.resource("typo", timeout=0.05)
    with pytest.raises(TimeoutError, match=r"`typo` had no value within 0\.05 s"):
        await asyncio.wait_for(wait, WAIT)


async def test_a_bounded_wait_withdraws_its_demand(pipeline: Pipeline) -> None:
    started, cancelled, _ = blocking_step(pipeline, "slow", "slow")

    with pytest.raises(TimeoutError, match="`slow`"):
        await asyncio.wait_for(pipeline.resource("slow", timeout=0.05), WAIT)
    assert started.is_set()
    await asyncio.wait_for(cancelled.wait(), WAIT)


async def test_a_bounded_wait_returns_a_value_that_arrives_in_time(pipeline: Pipeline) -> None:
    async def push_soon() -> None:
        await asyncio.sleep(0)
        pipeline.add_environment_resources(late=3)

    pusher = asyncio.create_task(push_soon())
    assert await asyncio.wait_for(pipeline.resource("late", timeout=WAIT), WAIT) == 3
    await pusher


async def test_leaving_a_scope_waits_for_a_step_its_deadline_cancelled(pipeline: Pipeline) -> None:
    finished = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that takes a turn
            finished.set()
        return 1

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05), pipeline.scope():
            await pipeline.resource("slow")
    assert finished.is_set()  # the scope waited for the cancelled step's cleanup
