"""Errors are part of the API: the right class, a message naming step and resource, no hang."""

from __future__ import annotations

import asyncio

import pytest
from helpers import add_step

from pipeliner_rx import (
    CycleError,
    DuplicateProviderError,
    MissingResourceError,
    Pipeline,
    PipelineError,
    ResourceConflictError,
    StepOutputError,
)


async def test_missing_resource_raised_before_anything_runs(pipeline: Pipeline) -> None:
    ran: list[str] = []

    @pipeline.step(provides="base")
    async def base_provider() -> int:
        ran.append("base_provider")
        return 1

    @pipeline.step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        ran.append("divide")
        return base // divisor

    @pipeline.step()
    async def get_division(result: int, extra: int) -> int:
        return result

    with pytest.raises(MissingResourceError) as info:
        await get_division()
    err = info.value
    assert isinstance(err, PipelineError)
    assert err.resource == "divisor"
    assert err.needed_by == ("divide", "get_division")
    assert {r for r, _ in err.missing} == {"divisor", "extra"}
    message = str(err)
    assert "`divisor`" in message and "`divide` <- `get_division`" in message
    assert "`extra`" in message and "get_division(" in message
    await asyncio.sleep(0)
    assert ran == []
    assert not pipeline.resource_ready("base")


async def test_missing_resource_lists_every_chain(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(x: int) -> int:
        return x

    @pipeline.step(provides="b")
    async def make_b(x: int) -> int:
        return x

    @pipeline.step()
    async def target(a: int, b: int) -> int:
        return a + b

    with pytest.raises(MissingResourceError, match="`make_a` <- `target` and by `make_b`"):
        await target()


@pytest.mark.parametrize("length", [1, 2, 3, 5])
async def test_cycle_error_spells_out_the_cycle(pipeline: Pipeline, length: int) -> None:
    # r0 <- s0(r1), r1 <- s1(r2), ..., r{n-1} <- s{n-1}(r0)
    for i in range(length):

        async def fn(**_: int) -> int:
            return 0

        add_step(pipeline, f"s{i}", [f"r{(i + 1) % length}"], f"r{i}", fn)

    with pytest.raises(CycleError) as info:
        await asyncio.wait_for(pipeline.resource("r0"), 1)
    path = info.value.path
    assert path[0] == path[-1] == "r0"
    assert len(path) == 2 * length + 1
    assert set(path[1::2]) == {f"s{i}" for i in range(length)}
    assert " -> ".join(path) in str(info.value)


async def test_cycle_error_matches_documented_format(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(b: int) -> int:
        return b

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    @pipeline.step()
    async def use(a: int) -> int:
        return a

    with pytest.raises(CycleError, match="a -> make_b -> b -> make_a -> a"):
        await use()
    with pytest.raises(CycleError):
        await asyncio.wait_for(pipeline.resource("b"), 1)
    # A supplied member of the cycle breaks it.
    assert await asyncio.wait_for(use(b=5), 1) == 5


def test_duplicate_provider_rejected_at_registration(pipeline: Pipeline) -> None:
    @pipeline.step(provides="x")
    async def first() -> int:
        return 1

    with pytest.raises(DuplicateProviderError) as info:

        @pipeline.step(provides=("y", "x"))
        async def second() -> int:
            return 2

    assert (info.value.resource, info.value.step, info.value.existing) == ("x", "second", "first")
    assert "`x`" in str(info.value) and "`first`" in str(info.value)
    assert [s.name for s in pipeline.steps] == ["first"]


@pytest.mark.parametrize("provides", [3, ("a", 3), ("a", "a"), [""], b"x"])
def test_bad_provides_is_a_type_error(pipeline: Pipeline, provides: object) -> None:
    async def f() -> None:
        return None

    with pytest.raises(TypeError, match="provides"):
        pipeline.step(provides=provides)(f)  # type: ignore[call-overload]


def test_var_args_and_positional_only_are_type_errors(pipeline: Pipeline) -> None:
    async def star(*args: int) -> None:
        return None

    async def kw(**kwargs: int) -> None:
        return None

    async def posonly(a: int, /) -> None:
        return None

    for fn in (star, kw, posonly):
        with pytest.raises(TypeError, match=fn.__name__):
            pipeline.step()(fn)


def test_generators_are_type_errors(pipeline: Pipeline) -> None:
    async def agen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match="generator"):
        pipeline.step(provides="x")(agen)


@pytest.mark.parametrize("returned", [(1, 2, 3), 5, [1]])
async def test_wrong_output_count_fails_all_outputs(pipeline: Pipeline, returned: object) -> None:
    @pipeline.step(provides=("a", "b"))
    async def pair() -> object:
        return returned

    with pytest.raises(StepOutputError) as info:
        await pair()
    assert info.value.step == "pair"
    assert "`pair`" in str(info.value) and "`a`, `b`" in str(info.value)
    for name in ("a", "b"):
        with pytest.raises(StepOutputError):
            await asyncio.wait_for(pipeline.resource(name), 1)
        assert not pipeline.resource_ready(name)


async def test_conflicting_value_rejected_equal_value_accepted(pipeline: Pipeline) -> None:
    @pipeline.step(provides="y")
    async def f(x: int) -> int:
        return x * 2

    assert await f(x=1) == 2
    assert await f(x=1) == 2
    with pytest.raises(ResourceConflictError) as info:
        await f(x=2)
    assert info.value.resource == "x"
    assert "`x`" in str(info.value)
    with pytest.raises(ResourceConflictError):
        pipeline.add_environment_resources(y=3)
    # Nothing changed, and the earlier result is still there.
    assert await pipeline.resource("x") == 1
    assert await pipeline.resource("y") == 2


async def test_conflict_check_is_all_or_nothing(pipeline: Pipeline) -> None:
    pipeline.add_environment_resources(a=1)
    with pytest.raises(ResourceConflictError):
        pipeline.add_environment_resources(b=2, a=3)
    assert not pipeline.resource_ready("b")


async def test_uncomparable_values_count_as_different(pipeline: Pipeline) -> None:
    class Weird:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    w = Weird()
    pipeline.add_environment_resources(w=w)
    pipeline.add_environment_resources(w=w)  # the same object is always fine
    with pytest.raises(ResourceConflictError):
        pipeline.add_environment_resources(w=Weird())


def chain_of_three(
    pipeline: Pipeline, runs: dict[str, int], fail: list[bool], gate: asyncio.Event | None = None
) -> None:
    @pipeline.step(provides="a")
    async def first() -> int:
        runs["first"] = runs.get("first", 0) + 1
        if gate is not None:
            await gate.wait()
        if fail[0]:
            raise ValueError("boom")
        return 1

    @pipeline.step(provides="b")
    async def second(a: int) -> int:
        runs["second"] = runs.get("second", 0) + 1
        return a + 1

    @pipeline.step()
    async def third(b: int) -> int:
        runs["third"] = runs.get("third", 0) + 1
        return b + 1


async def test_step_exception_keeps_type_and_reaches_every_waiter(pipeline: Pipeline) -> None:
    runs: dict[str, int] = {}
    gate = asyncio.Event()  # fails once every waiter is attached
    chain_of_three(pipeline, runs, [True], gate)
    waiters = [asyncio.create_task(pipeline.resource(n)) for n in ("a", "b", "b")]
    call = asyncio.create_task(pipeline.steps[2]())
    await asyncio.sleep(0)  # the tasks above run up to their first wait, in order
    gate.set()
    with pytest.raises(ValueError, match="boom") as info:
        await asyncio.wait_for(call, 1)
    notes = "\n".join(info.value.__notes__)
    assert "`first`" in notes
    # Several callers share the error: none of them sees a note about another's demand.
    assert "could not be computed" not in notes
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 1)
    assert all(isinstance(r, ValueError) for r in results)
    assert runs == {"first": 1}  # dependents did not run


async def test_a_single_caller_sees_the_failure_chain(pipeline: Pipeline) -> None:
    runs: dict[str, int] = {}
    chain_of_three(pipeline, runs, [True])
    with pytest.raises(ValueError, match="boom") as info:
        await asyncio.wait_for(pipeline.steps[2](), 1)
    notes = info.value.__notes__
    assert notes[0].startswith("Raised by step `first`")
    assert "`third` could not be computed: first -> a -> second -> b -> third." in notes


async def test_errors_are_not_cached(pipeline: Pipeline) -> None:
    runs: dict[str, int] = {}
    fail = [True]
    chain_of_three(pipeline, runs, fail)
    third = pipeline.steps[2]
    with pytest.raises(ValueError):
        await asyncio.wait_for(third(), 1)
    fail[0] = False
    assert await asyncio.wait_for(third(), 1) == 3
    assert runs == {"first": 2, "second": 1, "third": 1}


async def test_failure_keeps_earlier_results(pipeline: Pipeline) -> None:
    @pipeline.step(provides="good")
    async def good() -> int:
        return 1

    @pipeline.step(provides="bad")
    async def bad(good: int) -> int:
        raise KeyError(good)

    with pytest.raises(KeyError):
        await asyncio.wait_for(bad(), 1)
    assert pipeline.resource_ready("good")
    assert await pipeline.resource("good") == 1


async def test_sibling_failure_does_not_hang_join(pipeline: Pipeline) -> None:
    release = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        await release.wait()
        return 1

    @pipeline.step(provides="fast")
    async def fast() -> int:
        raise RuntimeError("fast failed")

    @pipeline.step()
    async def both(slow: int, fast: int) -> int:
        return slow + fast

    with pytest.raises(RuntimeError, match="fast failed"):
        await asyncio.wait_for(both(), 1)
