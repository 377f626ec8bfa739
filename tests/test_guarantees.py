"""The engine's guarantees at its edges: inputs read at start, rejected calls, atomic pushes,
one loop per store, step identity, async callables, scopes on executors, bookkeeping, bad input
and errors as values. Each guarantee has an example and, where it has a shape, generated cases.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
import reactivex
from helpers import add_step, blocking_step
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.subject import Subject

import pipeliner_rx
from pipeliner_rx import (
    CycleError,
    DuplicateProviderError,
    MissingResourceError,
    Pipeline,
    PipelineError,
    ResourceConflictError,
    ScopeClosedError,
    StepEvent,
    StepPicklingError,
    StoreInUseError,
    UnknownTargetError,
)

WAIT = 5
names = st.text("abcdefghij", min_size=1, max_size=4)


def add_values(**kwargs: Any) -> int:
    return sum(kwargs.values())


# -- inputs are read when a step starts ----------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(default=st.integers(), pushed=st.integers())
def test_a_value_pushed_before_the_step_starts_beats_the_default(default: int, pushed: int) -> None:
    async def main() -> None:
        pipeline = Pipeline()
        gate = asyncio.Event()

        @pipeline.step(provides="slow")
        async def slow() -> int:
            await gate.wait()
            return 0

        async def uses(slow: int, option: int = default) -> int:
            return slow + option

        pipeline.step(provides="out")(uses)
        task = asyncio.create_task(pipeline.resource("out"))
        await asyncio.sleep(0)  # demanded: `uses` waits for `slow`
        pipeline.add_environment_resources(option=pushed)
        gate.set()
        assert await asyncio.wait_for(task, WAIT) == pushed

    asyncio.run(main())


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@settings(max_examples=30, deadline=None)
@given(outer=st.text(max_size=5), inner=st.text(max_size=5), depth=st.integers(1, 4))
def test_a_context_variable_set_in_a_step_stays_in_that_step(
    outer: str, inner: str, depth: int
) -> None:
    async def main() -> None:
        pipeline = Pipeline()
        seen: list[str] = []

        @pipeline.step(provides="r0")
        async def first() -> int:
            seen.append(request_id.get())
            request_id.set(inner)  # inside this step's task only
            return 0

        for level in range(1, depth + 1):

            async def later(**kwargs: Any) -> int:
                seen.append(request_id.get())
                request_id.set(inner + "!")
                return 0

            add_step(pipeline, f"s{level}", [f"r{level - 1}"], f"r{level}", later)
        request_id.set(outer)  # the demand's context
        await asyncio.wait_for(pipeline.resource(f"r{depth}"), WAIT)
        assert seen == [outer] * (depth + 1)
        assert request_id.get() == outer

    asyncio.run(main())


# -- a rejected call changes nothing -------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(given_names=st.sets(names.filter(lambda n: n not in ("need", "z")), max_size=4))
def test_a_call_rejected_for_a_missing_input_stores_none_of_its_arguments(
    given_names: set[str],
) -> None:
    async def main() -> None:
        pipeline = Pipeline()

        @pipeline.step(provides="z")
        async def target(need: int) -> int:
            return need

        arguments = dict.fromkeys(given_names, 1)
        with pytest.raises(MissingResourceError):
            await asyncio.wait_for(target(**arguments), WAIT)
        assert not any(pipeline.resource_ready(name) for name in given_names)
        assert await asyncio.wait_for(target(**arguments, need=5), WAIT) == 5

    asyncio.run(main())


async def test_a_call_rejected_for_a_cycle_stores_nothing(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(b: int, x: int) -> int:
        return b

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    with pytest.raises(CycleError):
        await asyncio.wait_for(make_a(x=1), WAIT)
    assert not pipeline.resource_ready("x")


async def test_a_call_rejected_for_a_conflict_stores_none_of_its_arguments(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="z")
    async def target(a: int, b: int) -> int:
        return a + b

    pipeline.add_environment_resources(b=1)
    with pytest.raises(ResourceConflictError):
        await asyncio.wait_for(target(a=1, b=2), WAIT)
    assert not pipeline.resource_ready("a")
    assert await asyncio.wait_for(target(a=2), WAIT) == 3


# -- pushes are atomic; observers run on a consistent store, isolated ----------------------------


@settings(max_examples=50, deadline=None)
@given(values=st.dictionaries(names, st.integers(), min_size=2, max_size=5), data=st.data())
def test_a_push_is_applied_whole_even_if_a_subscriber_pushes_in_reaction(
    values: dict[str, int], data: st.DataObject
) -> None:
    first, *rest = values
    other = data.draw(st.sampled_from(rest))

    async def main() -> None:
        pipeline = Pipeline()
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reports.append(context))
        seen: list[bool] = []

        def react(_: Any) -> None:
            # Reacting to the first value: the whole push is already there.
            seen.append(all(pipeline.resource_ready(name) for name in values))
            pipeline.add_environment_resources(**{other: values[other] + 1})

        pipeline.observe(first).subscribe(react)
        pipeline.add_environment_resources(**values)
        for name, value in values.items():
            assert await asyncio.wait_for(pipeline.resource(name), WAIT) == value
        assert seen == [True]
        # The reaction's own push conflicts, and is reported, not lost silently.
        assert len(reports) == 1
        assert isinstance(reports[0]["exception"], ResourceConflictError)

    asyncio.run(main())


@pytest.mark.parametrize("present", [True, False])
async def test_an_observer_that_raises_is_reported_and_changes_nothing(
    pipeline: Pipeline, present: bool, nothing_left_behind: list[dict[str, Any]]
) -> None:
    if present:
        pipeline.add_environment_resources(x=1)
    got: list[int] = []

    def bad(_: int) -> None:
        raise RuntimeError("observer bug")

    pipeline.observe("x").subscribe(bad)
    pipeline.observe("x").subscribe(got.append)
    if not present:
        pipeline.add_environment_resources(x=1)
    assert await asyncio.wait_for(pipeline.resource("x"), WAIT) == 1
    assert got == [1]
    assert [type(r["exception"]) for r in nothing_left_behind] == [RuntimeError]
    nothing_left_behind.clear()


# -- one store, one running loop -----------------------------------------------------------------


async def test_a_store_used_from_a_second_running_loop_raises_there(pipeline: Pipeline) -> None:
    gate = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow() -> int:
        await gate.wait()
        return 1

    task = asyncio.create_task(pipeline.resource("slow"))
    await asyncio.sleep(0)
    caught: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(pipeline.resource("slow"))
        except BaseException as exc:
            caught.append(exc)

    await asyncio.to_thread(other_thread)
    assert len(caught) == 1 and isinstance(caught[0], StoreInUseError)
    assert "scope per thread" in str(caught[0])
    gate.set()
    assert await asyncio.wait_for(task, WAIT) == 1  # the first loop's caller is unaffected


async def test_asyncio_run_inside_a_sync_step_is_refused_clearly(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def a() -> int:
        return 1

    @pipeline.step(provides="b")
    def b(x: int) -> int:
        return int(asyncio.run(pipeline.resource("a")))

    with pytest.raises(StoreInUseError):
        await asyncio.wait_for(b(x=1), WAIT)
    assert await asyncio.wait_for(a(), WAIT) == 1


def test_an_observer_left_on_a_finished_loop_hears_an_error(pipeline: Pipeline) -> None:
    errors: list[BaseException] = []

    async def subscribe() -> None:
        pipeline.observe("never").subscribe(on_error=errors.append)

    asyncio.run(subscribe())
    assert len(errors) == 1 and isinstance(errors[0], PipelineError)
    assert "event loop finished" in str(errors[0])


# -- steps are identified by identity, not by name -----------------------------------------------


@settings(max_examples=30, deadline=None)
@given(count=st.integers(2, 6), same_output=st.booleans())
def test_closures_made_in_a_loop_are_different_steps(count: int, same_output: bool) -> None:
    pipeline = Pipeline()

    def factory(i: int) -> Callable[[], Any]:
        async def make() -> int:
            return i

        return make

    if same_output:
        pipeline.step(provides="out")(factory(0))
        for i in range(1, count):
            with pytest.raises(DuplicateProviderError):
                pipeline.step(provides="out")(factory(i))
        assert len(pipeline.steps) == 1
        return
    for i in range(count):
        pipeline.step(provides=f"out{i}")(factory(i))
    assert len(pipeline.steps) == count
    labels = [step.label for step in pipeline.steps]
    assert len(set(labels)) == count
    assert pipeline.to_dot().count("shape=box") == count
    assert pipeline.to_mermaid().count(":::step") == count

    async def main() -> None:
        events: list[StepEvent] = []
        subscription = pipeline.events.subscribe(events.append)
        for i in range(count):
            assert await asyncio.wait_for(pipeline.resource(f"out{i}"), WAIT) == i
        subscription.dispose()
        started = {event.step for event in events if event.kind == "started"}
        assert started == set(labels)

    asyncio.run(main())


async def test_bound_methods_of_different_objects_are_different_steps(
    pipeline: Pipeline,
) -> None:
    class Source:
        def __init__(self, value: int) -> None:
            self.value = value

        async def read(self) -> int:
            return self.value

    pipeline.step(provides="one")(Source(1).read)
    pipeline.step(provides="two")(Source(2).read)
    assert len(pipeline.steps) == 2
    assert await asyncio.wait_for(pipeline.resource("one"), WAIT) == 1
    assert await asyncio.wait_for(pipeline.resource("two"), WAIT) == 2
    plan = pipeline.plan("two")
    assert plan.skips == ["read#2"]
    with pytest.raises(DuplicateProviderError):
        pipeline.step(provides="one")(Source(3).read)


# -- async callables are awaited -----------------------------------------------------------------


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x + 1


async def add_one(x: int, amount: int) -> int:
    return x + amount


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    "make",
    [
        lambda: AsyncCallable(),
        lambda: functools.partial(add_one, amount=1),
        lambda: logged(functools.partial(add_one, amount=1)),
    ],
    ids=["async __call__", "partial", "wraps decorator"],
)
async def test_async_callables_are_awaited(
    pipeline: Pipeline, make: Callable[[], Callable[..., Any]]
) -> None:
    step = pipeline.step(provides="y")(make())
    assert step.is_async
    assert await asyncio.wait_for(step(x=1), WAIT) == 2


async def test_a_plain_step_returning_an_awaitable_is_a_type_error(pipeline: Pipeline) -> None:
    async def coroutine() -> int:
        return 1

    @pipeline.step(provides="y")
    def mistaken() -> Any:
        return coroutine()

    with pytest.raises(TypeError, match="`mistaken` is a plain `def` step"):
        await asyncio.wait_for(mistaken(), WAIT)


# -- the scope follows sync steps onto every in-process executor ---------------------------------


class InlineExecutor(concurrent.futures.Executor):
    """An in-process executor of its own kind: a thread per call."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run).start()
        return future


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.integers(), min_size=1, max_size=4))
def test_a_sync_step_pushes_into_its_scope_on_any_in_process_executor(values: list[int]) -> None:
    async def main() -> None:
        pipeline = Pipeline(executor=InlineExecutor())

        @pipeline.step(provides="done")
        def pusher(value: int) -> int:
            pipeline.add_environment_resources(pushed=value)
            return value

        for value in values:
            async with pipeline.scope(value=value) as scope:
                assert await asyncio.wait_for(pusher(), WAIT) == value
                assert await asyncio.wait_for(scope.resource("pushed"), WAIT) == value
        assert not pipeline.resource_ready("pushed")

    asyncio.run(main())


# -- no bookkeeping leaks ------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["empty", "error", "disposed"])
async def test_a_feed_leaves_no_entry_however_it_ends(pipeline: Pipeline, ending: str) -> None:
    source: Subject[int] = Subject()
    async with pipeline.scope() as scope:
        subscription = scope.feed("x", source)
        waiter = asyncio.create_task(scope.resource("x"))
        await asyncio.sleep(0)
        if ending == "empty":
            source.on_completed()
            with pytest.raises(PipelineError, match="completed without an item"):
                await asyncio.wait_for(waiter, WAIT)
        elif ending == "error":
            source.on_error(KeyError("gone"))
            with pytest.raises(KeyError):
                await asyncio.wait_for(waiter, WAIT)
        else:
            subscription.dispose()
            waiter.cancel()
        assert not source.observers
    # nothing_left_behind checks that the store has no feed entry and no observer left


async def test_a_failure_elsewhere_withdraws_the_demand_and_cancels_the_provider(
    pipeline: Pipeline,
) -> None:
    started, cancelled, _ = blocking_step(pipeline, "x", "slow")
    source: Subject[int] = Subject()
    pipeline.feed("x", source)
    waiter = asyncio.create_task(pipeline.resource("x"))
    await asyncio.wait_for(started.wait(), WAIT)
    source.on_error(KeyError("the feed failed"))
    with pytest.raises(KeyError):
        await asyncio.wait_for(waiter, WAIT)
    await asyncio.wait_for(cancelled.wait(), WAIT)


# -- bad input gets a clear error at once --------------------------------------------------------


@pytest.mark.parametrize("name", [None, 1, b"x", "", ("x",)])
async def test_a_resource_name_that_is_not_a_string_is_a_type_error(
    pipeline: Pipeline, name: Any
) -> None:
    with pytest.raises(TypeError, match="resource name"):
        await asyncio.wait_for(pipeline.resource(name), WAIT)
    with pytest.raises(TypeError):
        pipeline.resource_ready(name)
    with pytest.raises(TypeError):
        pipeline.observe(name)
    with pytest.raises(TypeError):
        pipeline.feed(name, reactivex.just(1))
    with pytest.raises(TypeError):
        await asyncio.wait_for(pipeliner_rx.resource(name), WAIT)


async def test_a_scope_is_entered_once(pipeline: Pipeline) -> None:
    scope = pipeline.scope()
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with scope:
            entered.set()
            await leave.wait()

    task = asyncio.create_task(first())
    await asyncio.wait_for(entered.wait(), WAIT)
    with pytest.raises(PipelineError, match="entered once"):
        async with scope:
            pass
    leave.set()
    await asyncio.wait_for(task, WAIT)
    with pytest.raises(ScopeClosedError):
        with scope:
            pass


# -- errors are values you can ship and read -----------------------------------------------------

texts = st.text(max_size=30)
ERRORS: list[Callable[[st.DataObject], PipelineError]] = [
    lambda d: MissingResourceError(
        [(d.draw(names), tuple(d.draw(st.lists(names, max_size=3))))], d.draw(names)
    ),
    lambda d: CycleError([d.draw(names), d.draw(names), d.draw(names)]),
    lambda d: DuplicateProviderError(d.draw(names), d.draw(names), d.draw(names)),
    lambda d: pipeliner_rx.StepOutputError(d.draw(names), ("a", "b"), d.draw(st.integers())),
    lambda d: StepPicklingError(d.draw(names), d.draw(texts), d.draw(texts), d.draw(names)),
    lambda d: ResourceConflictError(d.draw(names), d.draw(st.integers()), d.draw(texts)),
    lambda d: ScopeClosedError(d.draw(st.integers(0))),
    lambda d: UnknownTargetError(d.draw(names), d.draw(st.lists(names, max_size=30))),
    lambda d: StoreInUseError(d.draw(st.integers(0))),
]


@settings(max_examples=100, deadline=None)
@given(data=st.data(), which=st.integers(0, len(ERRORS) - 1), note=texts)
def test_every_error_survives_a_pickle_round_trip(
    data: st.DataObject, which: int, note: str
) -> None:
    error = ERRORS[which](data)
    error.add_note(note)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
    assert copy.__notes__ == [note]


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 100_000))
def test_messages_show_values_bounded(size: int) -> None:
    error = ResourceConflictError("x", "a" * size, Unrepresentable())
    assert len(str(error)) < 700
    assert "<unrepresentable Unrepresentable>" in str(error)


async def test_a_closed_scope_raises_one_class_wherever_it_is_detected(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="y")
    async def y(x: int) -> int:
        return x

    scope = pipeline.scope()
    async with scope:
        waiter = asyncio.create_task(scope.resource("never"))
        await asyncio.sleep(0)
    errors: list[BaseException] = []
    for attempt in (
        lambda: waiter,
        lambda: scope.resource("y"),
        lambda: asyncio.to_thread(scope.add_environment_resources, x=1),
    ):
        try:
            await asyncio.wait_for(attempt(), WAIT)
        except PipelineError as exc:
            errors.append(exc)
    assert [type(e) for e in errors] == [ScopeClosedError] * 3
    assert len({str(e) for e in errors}) == 1


async def test_an_unknown_target_is_one_class(pipeline: Pipeline) -> None:
    @pipeline.step(provides="y")
    async def y(x: int) -> int:
        return x

    with pytest.raises(UnknownTargetError) as info:
        pipeline.plan("nope")
    assert info.value.target == "nope" and info.value.choices == ("y",)
    with pytest.raises(UnknownTargetError):
        pipeline.to_dot(["nope"])


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 120))
def test_a_long_failure_chain_is_shown_bounded(length: int) -> None:
    async def main() -> None:
        pipeline = Pipeline()

        @pipeline.step(provides="r0")
        async def root() -> int:
            raise ValueError("root failed")

        for level in range(1, length + 1):

            async def link(**kwargs: Any) -> int:
                return 0

            add_step(pipeline, f"s{level}", [f"r{level - 1}"], f"r{level}", link)
        with pytest.raises(ValueError) as info:
            await asyncio.wait_for(pipeline.resource(f"r{length}"), WAIT)
        notes = info.value.__notes__
        assert notes[0] == "Raised by step `root`, which provides `r0`."
        chain = [note for note in notes if "could not be computed" in note]
        assert len(chain) == 1 and len(chain[0]) < 700
        assert chain[0].startswith(f"`r{length}` could not be computed: root -> r0")
        assert chain[0].endswith(f"s{length}.")
        if 2 * length + 1 > 40:
            assert "more) ..." in chain[0]

    asyncio.run(main())


SHARED = ValueError("the same instance every time")


async def test_a_reraised_instance_gets_the_note_once_and_no_stale_chain(
    pipeline: Pipeline,
) -> None:
    @pipeline.step(provides="a")
    async def first() -> int:
        raise SHARED

    @pipeline.step(provides="b")
    async def second(a: int) -> int:
        return a

    SHARED.__notes__ = []
    for _ in range(3):
        with pytest.raises(ValueError):
            await asyncio.wait_for(second(), WAIT)
    assert SHARED.__notes__ == [
        "Raised by step `first`, which provides `a`.",
        "`second` could not be computed: first -> a -> second.",
    ]
    with pytest.raises(ValueError):
        await asyncio.wait_for(pipeline.resource("a"), WAIT)
    assert SHARED.__notes__ == ["Raised by step `first`, which provides `a`."]


@settings(max_examples=30, deadline=None)
@given(callers=st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, max_size=5))
def test_a_caller_never_sees_a_note_about_another_callers_demand(callers: list[str]) -> None:
    async def main() -> None:
        pipeline = Pipeline()
        gate = asyncio.Event()

        @pipeline.step(provides="a")
        async def first() -> int:
            await gate.wait()
            raise ValueError("shared failure")

        @pipeline.step(provides="b")
        async def second(a: int) -> int:
            return a

        @pipeline.step(provides="c")
        async def third(b: int) -> int:
            return b

        tasks = [asyncio.create_task(pipeline.resource(name)) for name in callers]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
        error = results[0]
        assert all(result is error for result in results)
        assert isinstance(error, ValueError)
        notes = error.__notes__
        # Several callers share the instance: none of them sees another's demand noted.
        assert not any("could not be computed" in note for note in notes), notes

    asyncio.run(main())
