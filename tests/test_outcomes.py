"""Every outcome of a step answers every waiter, and errors are never cached, without a window.

Whatever a step does (returns, raises an `Exception` or another `BaseException`, raises an
exception that refuses notes, returns a multi-output value that cannot be read, raises
`StopIteration` from a plain ``def``), each waiter on its outputs finishes: callers, dependents,
`resource` and `observe`. Outcomes are generated, as are the depths and kinds of waiters.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeliner_rx import Pipeline, StepEvent, StepOutputError

WAIT = 5  # seconds: every await of a test is bounded by this


class Halt(BaseException):
    """A custom BaseException that is not an Exception."""


@dataclass(frozen=True)
class FrozenError(Exception):
    """An exception that refuses notes: a frozen dataclass cannot take `__notes__`."""

    code: int


class UnreadableTuple(tuple[int, ...]):
    """A multi-output value whose iteration raises."""

    def __iter__(self) -> Any:
        raise LookupError("cannot iterate")


class UnsizedList(list[int]):
    """A multi-output value whose length raises."""

    def __len__(self) -> int:
        raise LookupError("no length")


def tuple_notes() -> ValueError:
    error = ValueError("notes are a tuple")
    error.__notes__ = ("set by the user",)  # type: ignore[assignment]
    return error


async def _halt() -> None:
    raise Halt("inside a task group")


# Each outcome: what the async step does (None: an `asyncio.TaskGroup` whose task raises
# `Halt`), what the sync step does, and the error type the waiters see. A "do" returns the
# step's result or raises.
def _raise(error: Callable[[], BaseException]) -> Callable[[], Any]:
    def do() -> Any:
        raise error()

    return do


async def _task_group() -> Any:
    async with asyncio.TaskGroup() as group:
        group.create_task(_halt())


def _sync_group() -> Any:
    raise BaseExceptionGroup("from a task group", [Halt("inside")])


def _stop() -> Any:
    raise StopIteration("sync steps may not")


def _both(do: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    return do, do


OUTCOMES: dict[str, tuple[Callable[[], Any] | None, Callable[[], Any] | None, type]] = {
    "exception": (*_both(_raise(lambda: ValueError("plain"))), ValueError),
    "base exception": (*_both(_raise(lambda: Halt("custom"))), Halt),
    "generator exit": (*_both(_raise(GeneratorExit)), GeneratorExit),
    "task group": (None, _sync_group, BaseExceptionGroup),
    "frozen exception": (*_both(_raise(lambda: FrozenError(3))), FrozenError),
    "tuple notes": (*_both(_raise(tuple_notes)), ValueError),
    "unreadable outputs": (*_both(lambda: UnreadableTuple((1, 2))), LookupError),
    "unsized outputs": (*_both(lambda: UnsizedList([1, 2])), LookupError),
    "wrong output count": (*_both(lambda: (1, 2, 3)), StepOutputError),
    "stop iteration": (*_both(_stop), RuntimeError),
}


def failing_pipeline(outcome: str, is_async: bool, depth: int) -> tuple[Pipeline, list[str]]:
    """``bad`` provides ``out`` and ``other``; ``d1`` .. ``d{depth}`` are a chain after ``out``."""
    pipeline = Pipeline(executor=ThreadPoolExecutor(2))
    async_do, sync_do, _ = OUTCOMES[outcome]
    if is_async:

        async def bad() -> Any:
            await asyncio.sleep(0)
            if async_do is None:
                return await _task_group()
            return async_do()

    else:
        assert sync_do is not None

        def bad() -> Any:  # type: ignore[misc]
            return sync_do()

    pipeline.step(provides=("out", "other"))(bad)
    names = ["out"]
    for level in range(1, depth + 1):

        async def dependent(**inputs: Any) -> Any:
            return inputs

        dependent.__name__ = dependent.__qualname__ = f"d{level}"
        pipeline.step(provides=f"r{level}")(_with_param(dependent, names[-1]))
        names.append(f"r{level}")
    return pipeline, names


def _with_param(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` taking one parameter, ``name``."""
    import inspect

    @functools.wraps(fn)
    async def wrapper(**kwargs: Any) -> Any:
        return await fn(**kwargs)

    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY)]
    )
    return wrapper


async def observe_outcome(pipeline: Pipeline, name: str) -> BaseException | None:
    """Subscribe to ``observe(name)``; the error it ends with (None if it emitted)."""
    done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def finish(outcome: BaseException | None) -> None:
        if not done.done():
            done.set_result(outcome)

    pipeline.observe(name).subscribe(
        on_next=lambda _: finish(None), on_error=lambda error: finish(error)
    )
    return await asyncio.wait_for(done, WAIT)


@settings(max_examples=60, deadline=None)
@given(
    outcome=st.sampled_from(sorted(OUTCOMES)),
    is_async=st.booleans(),
    depth=st.integers(0, 3),
    waiters=st.lists(st.sampled_from(["call", "resource", "observe", "dependent"]), min_size=1),
)
def test_every_waiter_finishes_whatever_the_step_does(
    outcome: str, is_async: bool, depth: int, waiters: list[str]
) -> None:
    expected = OUTCOMES[outcome][2]

    async def main() -> None:
        pipeline, names = failing_pipeline(outcome, is_async, depth)
        bad = pipeline.steps[0]
        last = names[-1]
        awaitables: list[Any] = []
        for waiter in waiters:
            if waiter == "call":
                awaitables.append(bad())
            elif waiter == "resource":
                awaitables.append(pipeline.resource("other"))
            elif waiter == "observe":
                awaitables.append(observe_outcome(pipeline, "out"))
            else:
                awaitables.append(pipeline.resource(last))
        results = await asyncio.wait_for(asyncio.gather(*awaitables, return_exceptions=True), WAIT)
        for waiter, result in zip(waiters, results, strict=True):
            assert isinstance(result, expected), (waiter, result)
        # Nothing is cached: the failed outputs are missing, and nothing is left running.
        assert not pipeline.resource_ready("out") and not pipeline.resource_ready(last)

    asyncio.run(main())


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
@pytest.mark.parametrize("is_async", [True, False])
async def test_each_outcome_reaches_caller_dependent_resource_and_observer(
    outcome: str, is_async: bool
) -> None:
    pipeline, _ = failing_pipeline(outcome, is_async, 2)
    results = await asyncio.wait_for(
        asyncio.gather(
            pipeline.steps[0](),
            pipeline.resource("r2"),
            pipeline.resource("other"),
            observe_outcome(pipeline, "r1"),
            return_exceptions=True,
        ),
        WAIT,
    )
    assert all(isinstance(result, BaseException) for result in results), results


async def test_an_async_step_with_a_task_group_answers_with_its_group(pipeline: Pipeline) -> None:
    @pipeline.step(provides="x")
    async def grouped() -> int:
        async with asyncio.TaskGroup() as group:
            group.create_task(_halt())
        return 1

    with pytest.raises(BaseExceptionGroup) as info:
        await asyncio.wait_for(grouped(), WAIT)
    assert isinstance(info.value.exceptions[0], Halt)


async def test_stop_iteration_from_a_sync_step_becomes_a_runtime_error_naming_it(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="x")
    def exhausted() -> int:
        return next(iter([]))

    with pytest.raises(RuntimeError, match="`exhausted` raised StopIteration") as info:
        await asyncio.wait_for(exhausted(), WAIT)
    assert isinstance(info.value.__cause__, StopIteration)


async def test_an_exception_refusing_notes_reaches_its_waiters_unchanged(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="x")
    async def frozen() -> int:
        raise FrozenError(7)

    with pytest.raises(FrozenError) as info:
        await asyncio.wait_for(frozen(), WAIT)
    assert info.value.code == 7 and not hasattr(info.value, "__notes__")


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_leave_the_loop(
    pipeline: Pipeline, error: type[BaseException]
) -> None:
    @pipeline.step(provides="x")
    async def stop() -> int:
        raise error()

    async def main() -> None:
        await asyncio.wait_for(stop(), WAIT)

    with pytest.raises(error):
        asyncio.run(main())


# -- errors are not cached, without a window -----------------------------------------------------


def chain(pipeline: Pipeline, length: int, fail: list[bool], runs: list[str]) -> None:
    """``s0`` provides ``r0``, failing while ``fail[0]``; ``s{i}``: ``r{i}`` from ``r{i-1}``."""

    @pipeline.step(provides="r0")
    async def s0() -> int:
        runs.append("s0")
        await asyncio.sleep(0)
        if fail[0]:
            raise ValueError("s0 failed")
        return 0

    for i in range(1, length):

        async def link(**inputs: Any) -> int:
            (value,) = inputs.values()
            return int(value) + 1

        link.__name__ = link.__qualname__ = f"s{i}"
        pipeline.step(provides=f"r{i}")(_with_param(link, f"r{i - 1}"))


@settings(max_examples=100, deadline=None)
@given(
    length=st.integers(1, 6),
    data=st.data(),
    how=st.sampled_from(["await", "observe", "event"]),
)
def test_a_demand_made_as_soon_as_a_failure_is_heard_runs_the_provider_again(
    length: int, data: st.DataObject, how: str
) -> None:
    """A waiter on ``r{heard}`` reacts to the failure at once (in its except block, in its
    observer's on_error, or in a `failed` event) by demanding ``r{again}``: it gets a value."""
    heard = data.draw(st.integers(0, length - 1), label="heard")
    again = data.draw(st.integers(0, length - 1), label="again")

    async def main() -> None:
        pipeline = Pipeline()
        fail, runs = [True], list[str]()
        chain(pipeline, length, fail, runs)
        loop = asyncio.get_running_loop()
        second: asyncio.Future[Any] = loop.create_future()

        def demand_again() -> None:
            fail[0] = False
            task = loop.create_task(pipeline.resource(f"r{again}"))
            task.add_done_callback(
                lambda t: (
                    second.set_exception(t.exception())  # type: ignore[arg-type]
                    if t.exception()
                    else second.set_result(t.result())
                )
            )

        if how == "await":
            try:
                await asyncio.wait_for(pipeline.resource(f"r{heard}"), WAIT)
            except ValueError:
                fail[0] = False
                assert await asyncio.wait_for(pipeline.resource(f"r{again}"), WAIT) == again
                assert runs == ["s0", "s0"]
                return
            raise AssertionError("the failure was not delivered")
        if how == "observe":
            pipeline.observe(f"r{heard}").subscribe(on_error=lambda _: demand_again())
        else:

            def on_event(event: StepEvent) -> None:
                if event.kind == "failed" and not second.done() and fail[0]:
                    demand_again()

            subscription = pipeline.events.subscribe(on_event)
            pipeline.observe(f"r{heard}").subscribe(on_error=lambda _: None)
        assert await asyncio.wait_for(second, WAIT) == again
        assert runs == ["s0", "s0"]
        if how == "event":
            subscription.dispose()

    asyncio.run(main())


# -- events tell the truth ------------------------------------------------------------------------


async def test_a_step_whose_value_fails_step_output_error_emits_failed(
    pipeline: Pipeline,
) -> None:
    events: list[StepEvent] = []
    subscription = pipeline.events.subscribe(events.append)

    @pipeline.step(provides=("a", "b"))
    async def pair() -> tuple[int, ...]:
        return (1, 2, 3)

    with pytest.raises(StepOutputError):
        await asyncio.wait_for(pair(), WAIT)
    subscription.dispose()
    kinds = [event.kind for event in events]
    assert kinds == ["started", "failed"], kinds
    assert isinstance(events[1].error, StepOutputError)


async def test_events_observers_see_the_store_consistent(pipeline: Pipeline) -> None:
    seen: list[tuple[str, bool, bool]] = []

    @pipeline.step(provides=("a", "b"))
    async def pair() -> tuple[int, int]:
        return 1, 2

    def on_event(event: StepEvent) -> None:
        seen.append((event.kind, pipeline.resource_ready("a"), pipeline.resource_ready("b")))

    subscription = pipeline.events.subscribe(on_event)
    assert await asyncio.wait_for(pair(), WAIT) == (1, 2)
    subscription.dispose()
    assert seen == [("started", False, False), ("succeeded", True, True)]
