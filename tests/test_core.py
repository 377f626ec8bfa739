"""The core rules: lazy demand, each provider once, suppression, defaults, results."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pytest

import pipeliner_rx
from pipeliner_rx import Pipeline, add_environment_resources, resource, resource_ready, step


def make_seed(pipeline: Pipeline, calls: list[str]) -> dict[str, Any]:
    @pipeline.step(provides="base")
    async def base_provider() -> int:
        calls.append("base_provider")
        return 23

    @pipeline.step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        calls.append("divide")
        return base // divisor

    @pipeline.step(provides="modulus")
    async def mod(base: int, divisor: int) -> int:
        calls.append("mod")
        return base % divisor

    @pipeline.step(provides=("res_times_mod", "res_minus_mod"))
    async def get_resmod(result: int, modulus: int) -> tuple[int, int]:
        calls.append("get_resmod")
        return result * modulus, result - modulus

    @pipeline.step()
    async def get_division(base: int, result: int, modulus: int) -> tuple[int, int, int]:
        calls.append("get_division")
        return base, result, modulus

    return dict(locals())


async def test_seed_semantics_present_resource_suppresses_provider(pipeline: Pipeline) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    pipeline.add_environment_resources(base=38)
    assert await s["get_division"](divisor=3) == (38, 12, 2)
    assert calls == ["divide", "mod", "get_division"]
    assert await pipeline.resource("divisor") == 3
    assert await s["get_resmod"]() == (24, 10)
    assert calls[-1] == "get_resmod"


async def test_provider_runs_when_resource_missing(pipeline: Pipeline) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    assert await s["get_division"](divisor=5) == (23, 4, 3)
    assert calls.count("base_provider") == 1  # shared by divide and mod


async def test_only_needed_steps_run(pipeline: Pipeline) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    assert await s["divide"](base=10, divisor=2) == 5
    assert calls == ["divide"]


async def test_called_step_with_present_outputs_returns_stored_values(pipeline: Pipeline) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    pipeline.add_environment_resources(res_times_mod=1, res_minus_mod=2)
    assert await s["get_resmod"]() == (1, 2)
    pipeline.add_environment_resources(result=7)
    assert await s["divide"]() == 7
    assert calls == []


async def test_partially_present_outputs_run_the_step_and_present_values_win(
    pipeline: Pipeline,
) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    pipeline.add_environment_resources(res_times_mod=100, base=38, divisor=3)
    assert await pipeline.resource("res_minus_mod") == 12 - 2
    assert await pipeline.resource("res_times_mod") == 100
    # A direct call agrees with the store: the override wins there too.
    assert await s["get_resmod"]() == (100, 10)
    assert calls.count("get_resmod") == 1


async def test_kwargs_become_store_resources(pipeline: Pipeline) -> None:
    @pipeline.step(provides="y")
    async def f(x: int) -> int:
        return x + 1

    assert await f(x=1, unrelated="u") == 2
    assert pipeline.resource_ready("x")
    assert pipeline.resource_ready("unrelated")
    assert await pipeline.resource("unrelated") == "u"


async def test_resource_demands_provider_chain(pipeline: Pipeline) -> None:
    calls: list[str] = []
    make_seed(pipeline, calls)
    pipeline.add_environment_resources(divisor=4)
    assert await pipeline.resource("res_times_mod") == 5 * 3
    assert sorted(calls) == ["base_provider", "divide", "get_resmod", "mod"]


async def test_resource_without_provider_waits_for_push(pipeline: Pipeline) -> None:
    waiter = asyncio.create_task(pipeline.resource("late"))
    await asyncio.sleep(0)
    assert not waiter.done()
    assert not pipeline.resource_ready("late")
    pipeline.add_environment_resources(late=42)
    assert await asyncio.wait_for(waiter, 1) == 42


async def test_push_wakes_every_waiter_and_downstream(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        return 2 * x

    waiters = [asyncio.create_task(pipeline.resource("double")) for _ in range(3)]
    raw = asyncio.create_task(pipeline.resource("x"))
    await asyncio.sleep(0)
    pipeline.add_environment_resources(x=5)
    assert await asyncio.wait_for(asyncio.gather(*waiters, raw), 1) == [10, 10, 10, 5]


async def test_default_used_when_neither_supplied_nor_providable(pipeline: Pipeline) -> None:
    @pipeline.step()
    async def greet(name: str = "world", punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    @pipeline.step(provides="punctuation")
    async def shout() -> str:
        return "!!!"

    assert await greet() == "hello world!!!"
    assert await greet(name="you") == "hello you!!!"


async def test_step_without_outputs_runs_on_every_call(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step()
    async def side_effect() -> int:
        runs.append(1)
        return len(runs)

    assert await side_effect() == 1
    assert await side_effect() == 2


async def test_provider_runs_once_per_store_across_calls(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step(provides="value")
    async def compute() -> int:
        runs.append(1)
        return 7

    @pipeline.step()
    async def use(value: int) -> int:
        return value

    assert await use() == 7
    assert await use() == 7
    assert await compute() == 7
    assert runs == [1]


async def test_return_values_and_shapes(pipeline: Pipeline) -> None:
    @pipeline.step(provides="single")
    async def single() -> tuple[int, int]:
        return (1, 2)  # one output: the tuple is the value

    @pipeline.step(provides=["a", "b"])
    async def pair() -> list[int]:
        return [3, 4]

    assert await single() == (1, 2)
    assert await pair() == (3, 4)  # type: ignore[comparison-overlap]  # outputs come as a tuple
    assert await pipeline.resource("b") == 4


def test_decorated_step_keeps_name_doc_signature(pipeline: Pipeline) -> None:
    async def documented(alpha: int, beta: str = "b") -> str:
        """Docs."""
        return beta * alpha

    wrapped = pipeline.step(provides="out")(documented)
    assert wrapped.__name__ == "documented"  # type: ignore[attr-defined]
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is documented  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(documented)
    assert wrapped.provides == ("out",)


def test_bare_decorator_and_positional_provides(pipeline: Pipeline) -> None:
    @pipeline.step
    async def nothing() -> None:
        return None

    @pipeline.step("thing")
    async def thing() -> int:
        return 1

    assert nothing.provides == ()
    assert thing.provides == ("thing",)
    assert asyncio.run(nothing()) is None
    assert asyncio.run(thing()) == 1


def test_call_returns_coroutine_usable_with_run_and_tasks(pipeline: Pipeline) -> None:
    @pipeline.step(provides="v")
    async def v(x: int) -> int:
        return x

    coro = v(x=1)
    assert inspect.iscoroutine(coro)
    assert asyncio.run(coro) == 1

    async def main() -> int:
        return await asyncio.create_task(v())

    assert asyncio.run(main()) == 1


def test_module_level_api_works_across_event_loops() -> None:
    calls: list[str] = []

    @step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        calls.append("divide")
        return base // divisor

    async def main() -> int:
        add_environment_resources(base=38)
        value = await divide(divisor=3)
        assert await resource("divisor") == 3
        return value

    assert asyncio.run(main()) == 12
    assert asyncio.run(main()) == 12
    assert resource_ready("result")
    assert calls == ["divide"]


def test_pending_demand_of_a_finished_loop_is_dropped() -> None:
    pipeline = Pipeline()

    @pipeline.step(provides="y")
    async def f(x: int) -> int:
        return x

    async def abandon() -> None:
        task = asyncio.create_task(pipeline.resource("y"))
        await asyncio.sleep(0)
        assert not task.done()

    asyncio.run(abandon())  # leaves `f` waiting on `x` in a loop that is now closed

    async def again() -> int:
        return await asyncio.wait_for(f(x=3), 1)

    assert asyncio.run(again()) == 3


def test_reregistering_same_function_replaces_it(pipeline: Pipeline) -> None:
    # A notebook cell run twice: the same module-level definition, defined again.
    source = "@pipeline.step(provides='x')\nasync def provider():\n    return value\n"
    for value in (1, 2):
        namespace = {"__name__": "notebook_cell", "pipeline": pipeline, "value": value}
        exec(source, namespace)
    assert len(pipeline.steps) == 1
    assert asyncio.run(pipeline.resource("x")) == 2
    assert pipeline.steps[0] is namespace["provider"]


async def test_reset_empties_store_and_keeps_steps(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step(provides="v")
    async def v(x: int) -> int:
        runs.append(x)
        return x

    assert await v(x=1) == 1
    pipeline.reset()
    assert not pipeline.resource_ready("v")
    assert not pipeline.resource_ready("x")
    assert await v(x=2) == 2
    assert runs == [1, 2]


async def test_reset_fails_waiters_instead_of_leaving_them_hanging(pipeline: Pipeline) -> None:
    waiter = asyncio.create_task(pipeline.resource("never"))
    await asyncio.sleep(0)
    pipeline.reset()
    with pytest.raises(pipeliner_rx.PipelineError, match="reset"):
        await asyncio.wait_for(waiter, 1)


async def test_debug_logging_reports_activation_skip_start_finish(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    s = make_seed(pipeline, calls)
    caplog.set_level(logging.DEBUG, logger="pipeliner_rx")
    await s["get_division"](base=38, divisor=3)
    await s["divide"]()
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeliner_rx"]
    for expected in ("activate divide", "start divide", "finish divide", "skip divide"):
        assert any(m.startswith(expected) for m in messages), (expected, messages)


def test_fast_parameter_reading_agrees_with_inspect() -> None:
    from pipeliner_rx._step import _parse_params, _plain_params

    def positional(a, b=2, c=3):  # type: ignore[no-untyped-def]
        return None

    def keyword_only(a, *, b, c=None):  # type: ignore[no-untyped-def]
        return None

    async def mixed(x, y=None, *, z=1):  # type: ignore[no-untyped-def]
        return None

    def nothing() -> None:
        return None

    def with_locals(a):  # type: ignore[no-untyped-def]
        local = a  # a local variable is not a parameter
        return local

    for fn in (positional, keyword_only, mixed, nothing, with_locals):
        expected = [
            (p.name, p.default is not p.empty, None if p.default is p.empty else p.default)
            for p in inspect.signature(fn).parameters.values()
        ]
        fast = _plain_params(fn)
        assert fast is not None
        assert [(p.name, p.has_default, p.default) for p in fast] == expected, fn.__name__
        assert _parse_params(fn, fn.__name__) == fast
