"""Fault injection on generated DAGs: steps raise, time out, or block while callers are cancelled.

Whatever is injected, every call ends within a bounded time with the oracle's value or an
injected error, no step runs without the inputs the oracle would give it (so no dependent of a
failed step runs), failures are recomputed on the next demand, and nothing is left behind:
no pending task, no demand, no subscription on the store's subjects.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest
from dags import (
    BOUND,
    Dag,
    Node,
    Target,
    check_outcome,
    complete,
    dags,
    default_of,
    demand,
    expect,
    pure,
    register,
    run,
    seedings,
    settle,
    store_id,
    targets,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st
from reference import Failed, Missing, Reference, StepSpec

from pipeliner_rx import Pipeline, Step, StepEvent

# Passing runs take seconds; a failing property shrinks for up to a few minutes (Hypothesis'
# own limit) before it prints its minimal example, which the default 60 s would cut off.
pytestmark = pytest.mark.timeout(600)

T = TypeVar("T")
Fault = Literal["raise", "timeout", "block", "halt", "frozen", "stop", "unreadable"]
TIMEOUT = 0.01  # the `timeout=` of steps made to time out
_serials = itertools.count()


class Boom(Exception):
    """The injected error; each raise has its own serial number."""

    def __init__(self, step: str) -> None:
        self.serial = next(_serials)
        super().__init__(f"{step} failed on purpose (#{self.serial})")


class Halt(BaseException):
    """An injected BaseException that is not an Exception."""


@dataclass(frozen=True)
class FrozenBoom(Exception):
    """An injected exception that refuses notes (a frozen dataclass)."""

    step: str


class Unreadable(tuple[Any, ...]):
    """An injected multi-output value whose iteration raises."""

    def __iter__(self) -> Any:
        raise LookupError("the outputs cannot be read")


def raise_fault(fault: Fault | None, step: str) -> None:
    """Raise what ``fault`` raises (the library and the oracle alike), if it raises."""
    if fault == "raise":
        raise Boom(step)
    if fault == "halt":
        raise Halt(step)
    if fault == "frozen":
        raise FrozenBoom(step)


# What each fault looks like to a caller.
FAULT_ERRORS: dict[str, type[BaseException]] = {
    "raise": Boom,
    "timeout": TimeoutError,
    "halt": Halt,
    "frozen": FrozenBoom,
    "stop": RuntimeError,
    "unreadable": LookupError,
}


@dataclass
class Run:
    """What happened in one example: step starts with their inputs, and the library's events."""

    starts: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    events: list[StepEvent] = field(default_factory=list)
    # Called on the loop's thread with "began" when a step starts, "blocked" when it blocks.
    hook: Callable[[str], None] = lambda _: None
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # lets blocking steps go on
    released: threading.Event = field(default_factory=threading.Event)  # the same, for threads
    over: threading.Event = field(default_factory=threading.Event)  # the example has ended
    # Threads of timed-out steps stay blocked until the example ends: more than the loop's
    # default pool of min(32, cpus + 4) might hold.
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(64))

    def end(self) -> None:
        """Let every blocked thread go."""
        self.released.set()
        self.over.set()

    def counts(self, store: int, kind: str) -> Counter[str]:
        """How often each step had an event of ``kind`` in ``store``."""
        return Counter(e.step for e in self.events if e.scope == store and e.kind == kind)


Case = tuple[Dag, dict[str, Fault], dict[str, Any], list[Target]]


@st.composite
def faulty_cases(draw: st.DrawFn, calls: int) -> Case:
    """A DAG, its seeds, up to ``calls`` targets and up to 3 faulty steps, mostly among the
    steps the targets need (elsewhere a fault would change nothing)."""
    dag = draw(dags())
    seeds = draw(seedings(dag))
    wanted = draw(st.lists(targets(dag), min_size=1, max_size=calls))
    complete(dag.specs(), seeds, wanted)
    reference = Reference(dag.specs(), seeds)
    for target in wanted:
        expect(reference, target)
    names = sorted(set(reference.ran)) or [node.name for node in dag.nodes]
    faulty = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    kinds: list[Fault] = ["raise", "timeout", "block", "halt", "frozen", "stop"]
    outputs = {node.name: len(node.provides) for node in dag.nodes}
    faults = {
        name: draw(st.sampled_from(kinds + (["unreadable"] if outputs[name] > 1 else [])))
        for name in faulty
    }
    return dag, faults, seeds, wanted


def oracle_specs(dag: Dag, faults: dict[str, Fault]) -> list[StepSpec]:
    """The oracle's view: raising and timing-out steps raise; blocking steps just compute."""

    def fn_of(node: Node) -> Any:
        fault = faults.get(node.name)

        def fn(**kwargs: Any) -> Any:
            raise_fault(fault, node.name)
            if fault == "timeout":
                raise TimeoutError(node.name)
            if fault == "stop":
                raise RuntimeError(node.name)  # what the library makes of StopIteration
            if fault == "unreadable":
                return Unreadable(pure(node, kwargs))
            return pure(node, kwargs)

        return fn

    return dag.specs(fn_of)


def faulty_step(pipeline: Pipeline, node: Node, fault: Fault | None, run_: Run) -> Any:
    """``node``'s function for the library, with its fault injected."""
    loop = asyncio.get_running_loop()

    def started(kwargs: dict[str, Any]) -> None:
        run_.starts.append((store_id(pipeline), node.name, kwargs))
        if node.is_async:
            run_.hook("began")
        else:
            loop.call_soon_threadsafe(run_.hook, "began")

    if node.is_async:

        async def run_async(**kwargs: Any) -> Any:
            started(kwargs)
            raise_fault(fault, node.name)
            if fault == "stop":
                raise StopIteration  # a coroutine turns it into RuntimeError (PEP 479)
            if fault == "unreadable":
                return Unreadable(pure(node, kwargs))
            if fault == "timeout":
                await asyncio.Event().wait()  # only its timeout ends it
            if fault == "block":
                run_.hook("blocked")
                await run_.gate.wait()
            if node.sleep:
                await asyncio.sleep(node.sleep)
            return pure(node, kwargs)

        return run_async

    def run_sync(**kwargs: Any) -> Any:
        started(kwargs)
        raise_fault(fault, node.name)
        if fault == "stop":
            raise StopIteration  # asyncio cannot take it: the library makes it RuntimeError
        if fault == "unreadable":
            return Unreadable(pure(node, kwargs))
        if fault == "timeout":
            run_.over.wait(BOUND)  # past its timeout: a thread cannot be stopped, so it waits
        if fault == "block":
            loop.call_soon_threadsafe(run_.hook, "blocked")
            run_.released.wait(10)
        if node.sleep:
            run_.over.wait(node.sleep)  # a sleep that ends early if the example is over
        return pure(node, kwargs)

    return run_sync


def build_faulty(
    dag: Dag, faults: dict[str, Fault], run_: Run
) -> tuple[Pipeline, dict[str, Step[Any]]]:
    """A fresh pipeline running ``dag`` with ``faults``; call inside the loop that runs it."""
    pipeline = Pipeline(executor=run_.executor)
    pipeline.events.subscribe(run_.events.append)
    steps = {}
    for node in dag.nodes:
        fault = faults.get(node.name)
        fn = faulty_step(pipeline, node, fault, run_)
        timeout = TIMEOUT if fault == "timeout" else None
        steps[node.name] = register(pipeline, node, fn, timeout=timeout)
    return pipeline, steps


def run_faulty(run_: Run, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`run` ``main``, then let blocked threads go and wait for them."""
    try:
        return run(main)
    finally:
        run_.end()
        run_.executor.shutdown(wait=True)


def computable(specs: Sequence[StepSpec], seeds: dict[str, Any]) -> dict[str, Any]:
    """Every resource value the oracle can compute in a store seeded with ``seeds``."""
    reference = Reference(specs, seeds)
    for spec in specs:
        try:
            reference.call(spec.name)
        except (Missing, Failed):
            pass
    return reference.values


def check_starts(dag: Dag, run_: Run, values: dict[str, Any]) -> None:
    """Each step started with the oracle's inputs: none ran on a failed (or any wrong) input."""
    nodes = {node.name: node for node in dag.nodes}
    provided = set(dag.provided)
    for _, name, kwargs in run_.starts:
        node = nodes[name]
        for need in node.needs:
            if need in values:
                assert kwargs[need] == values[need], (name, need)
            else:
                assert need in node.defaults and need not in provided, (
                    f"`{name}` ran although its input `{need}` could not be computed"
                )
                assert kwargs[need] == default_of(node, need), (name, need)


def check_once(dag: Dag, run_: Run, store: int = 0) -> None:
    """A step with outputs succeeds at most once per store, and restarts only after it failed
    or was cancelled."""
    started = Counter(name for where, name, _ in run_.starts if where == store)
    succeeded = run_.counts(store, "succeeded")
    failed = run_.counts(store, "failed")
    cancelled = run_.counts(store, "cancelled")
    for node in dag.nodes:
        if node.provides:
            name = node.name
            assert succeeded[name] <= 1, name
            assert started[name] <= 1 + failed[name] + cancelled[name], name


def check_fault_outcome(got: Any, expected: Any, cancelled: bool) -> None:
    """A value or missing resources as the oracle says, else one of the injected errors."""
    if cancelled and isinstance(got, asyncio.CancelledError):
        return
    if isinstance(expected, Failed):
        injected = {type(error) for error in expected.errors.values()}
        assert type(got) in injected, (got, injected)
        notes = getattr(got, "__notes__", None)
        if isinstance(got, FrozenBoom):
            assert notes is None  # it refuses notes, and reaches its waiters all the same
        elif notes is not None:
            assert sum(note.startswith("Raised by step") for note in notes) == 1, notes
    else:
        check_outcome(got, expected)


@settings(max_examples=200, deadline=None)
@given(faulty_cases(calls=5), st.data())
def test_every_call_ends_with_a_value_or_the_injected_error(
    case: Case, data: st.DataObject
) -> None:
    """Concurrent calls with injected faults; some callers are cancelled from outside the
    moment the first step starts, or the moment a blocking step blocks (which is released
    once those callers are gone)."""
    dag, faults, seeds, wanted = case
    cancel = data.draw(st.sets(st.integers(0, len(wanted) - 1)))
    when = data.draw(st.sampled_from(["began", "blocked"]))
    specs = oracle_specs(dag, faults)
    reference = Reference(specs, seeds)
    expected = [expect(reference, target) for target in wanted]
    run_ = Run()

    async def main() -> list[Any]:
        pipeline, steps = build_faulty(dag, faults, run_)
        try:
            pipeline.add_environment_resources(**seeds)
            callers: list[asyncio.Task[Any]] = []
            fired = asyncio.Event()

            def fire(kind: str) -> None:
                if kind != when or fired.is_set():
                    return
                fired.set()
                for index in cancel:
                    if index < len(callers) and not callers[index].done():
                        event("a caller was cancelled mid-run")
                        callers[index].cancel()

            run_.hook = fire  # before the callers: an eager task starts its steps at once
            callers.extend(asyncio.create_task(demand(pipeline, steps, t)) for t in wanted)
            if fired.is_set():  # fired while the callers were being created
                for index in cancel:
                    if not callers[index].done():
                        callers[index].cancel()
            watch = [
                asyncio.create_task(fired.wait()),
                asyncio.create_task(asyncio.wait(callers)),
            ]
            await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
            for task in watch:
                task.cancel()
            await asyncio.wait(watch)
            chosen = [callers[index] for index in cancel]
            if chosen:
                await asyncio.wait(chosen)  # cancelled (or done): their demands are withdrawn
            run_.gate.set()
            run_.released.set()
            got = await asyncio.gather(*callers, return_exceptions=True)
            await settle(pipeline)
            return got
        finally:
            run_.end()

    got = run_faulty(run_, main)
    for outcome in got:
        event(f"outcome: {type(outcome).__name__}")
    for index, (outcome, want) in enumerate(zip(got, expected, strict=True)):
        check_fault_outcome(outcome, want, index in cancel)
    check_starts(dag, run_, computable(specs, seeds))
    check_once(dag, run_)


@settings(max_examples=200, deadline=None)
@given(faulty_cases(calls=3), st.sampled_from(["await", "observer"]))
def test_failures_are_not_cached(case: Case, via: str) -> None:
    """Each target demanded again the moment its failure is heard, in the same loop iteration:
    from the caller's own ``except`` (``await``), or from an ``observe`` subscriber's
    ``on_error`` (``observer``, for resource targets). A failed one fails again from a fresh
    run, and a computed one comes from the store."""
    dag, faults, seeds, wanted = case
    specs = oracle_specs(dag, faults)
    reference = Reference(specs, seeds)
    expected = [expect(reference, target) for target in wanted]
    run_ = Run()
    run_.gate.set()
    run_.released.set()

    async def call(pipeline: Pipeline, steps: dict[str, Step[Any]], target: Target) -> Any:
        try:
            return await demand(pipeline, steps, target)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # injected BaseExceptions included
            return exc

    async def twice(
        pipeline: Pipeline, steps: dict[str, Step[Any]], target: Target
    ) -> tuple[Any, Any, int]:
        kind, name = target
        if via == "await" or kind != "resource":
            first = await call(pipeline, steps, target)
            before = len(run_.starts)
            return first, await call(pipeline, steps, target), before
        loop = asyncio.get_running_loop()
        heard: asyncio.Future[tuple[Any, int]] = loop.create_future()
        again: list[asyncio.Task[Any]] = []

        def on_error(error: Exception) -> None:
            # Synchronously, in the notification of the failure.
            heard.set_result((error, len(run_.starts)))
            again.append(loop.create_task(call(pipeline, steps, target)))

        def on_next(value: Any) -> None:
            heard.set_result((value, len(run_.starts)))

        pipeline.observe(name).subscribe(on_next, on_error)
        first, before = await heard
        second = await again[0] if again else await call(pipeline, steps, target)
        return first, second, before

    async def main() -> None:
        pipeline, steps = build_faulty(dag, faults, run_)
        pipeline.add_environment_resources(**seeds)
        for target, want in zip(wanted, expected, strict=True):
            first, second, before = await twice(pipeline, steps, target)
            for got in (first, second):
                check_fault_outcome(got, want, cancelled=False)
            if isinstance(want, Failed):
                assert second is not first
                rerun = {name for _, name, _ in run_.starts[before:]}
                assert rerun & set(want.errors), "the failed step did not run again"
        await settle(pipeline)

    run_faulty(run_, main)
    check_starts(dag, run_, computable(specs, seeds))
    check_once(dag, run_)
