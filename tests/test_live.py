"""Live stores (`Pipeline.live`): one test or more per rule of the live semantics.

1 separate, 2 revisions, 3 coalescing, 4 lazy, 5 minimal with cutoff, 6 glitch-free,
7 stale runs cancelled, 8 errors keep streams open, 9 pins, 10 close, 11 scale; then threads,
events and the API's edges. Generated cases are in ``test_live_properties.py``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeliner_rx
from pipeliner_rx import (
    CycleError,
    LiveStore,
    LiveStoreClosedError,
    Pipeline,
    ScopeClosedError,
    StepEvent,
    StoreInUseError,
    UnknownTargetError,
)

BOUND = 5.0  # seconds any single wait may take


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, BOUND)


@pytest.fixture(autouse=True)
async def clean_loop() -> AsyncIterator[list[dict[str, Any]]]:
    """Every test: nothing reaches the loop's exception handler unless the test takes it, and
    no task is left behind."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    yield reports
    current = asyncio.current_task()
    leftover = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    assert leftover == []
    assert reports == []


class Log:
    """What each step ran with, in order."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.runs]

    def clear(self) -> None:
        self.runs.clear()


def diamond(pipeline: Pipeline, log: Log) -> None:
    """a -> b = 2a, a -> c = a % 2, (b, c) -> d = (b, c); z -> other = -z."""

    @pipeline.step(provides="b")
    async def double(a: int) -> int:
        log.runs.append(("double", {"a": a}))
        return 2 * a

    @pipeline.step(provides="c")
    async def parity(a: int) -> int:
        log.runs.append(("parity", {"a": a}))
        return a % 2

    @pipeline.step(provides="d")
    async def pair(b: int, c: int) -> tuple[int, int]:
        log.runs.append(("pair", {"b": b, "c": c}))
        return b, c

    @pipeline.step(provides="other")
    async def negate(z: int) -> int:
        log.runs.append(("negate", {"z": z}))
        return -z


def collect(live: LiveStore, name: str) -> tuple[list[Any], reactivex.abc.DisposableBase]:
    seen: list[Any] = []
    return seen, live.observe(name).subscribe(seen.append)


# -- 1. separate --------------------------------------------------------------------------------


async def test_live_store_is_separate_from_the_pipeline_store_and_scopes(
    pipeline: Pipeline,
) -> None:
    log = Log()
    diamond(pipeline, log)
    pipeline.add_environment_resources(a=1, z=5)
    async with pipeline.live(a=3) as live:  # arguments override the environment
        assert await bounded(live.get("d")) == (6, 1)
        assert await bounded(live.get("other")) == -5  # seeded from the environment
        assert not pipeline.resource_ready("b") and not pipeline.resource_ready("d")
        async with pipeline.scope(a=4):
            assert await bounded(pipeline.resource("d")) == (8, 0)
        # One-shot calls are unchanged: the pipeline's store computes its own values, once.
        assert await bounded(pipeline.resource("d")) == (2, 1)
        live.push(a=7)
        assert await bounded(live.get("d")) == (14, 1)
        assert await bounded(pipeline.resource("d")) == (2, 1)
    assert log.names().count("pair") == 4  # live: 2, scope: 1, pipeline: 1


async def test_module_level_live_uses_the_default_pipeline() -> None:
    @pipeliner_rx.step(provides="twice")
    async def twice(x: int) -> int:
        return 2 * x

    async with pipeliner_rx.live(x=4) as live:
        assert await bounded(live.get("twice")) == 8


# -- 2. revisions -------------------------------------------------------------------------------


async def test_push_applies_all_values_in_one_revision(pipeline: Pipeline) -> None:
    runs: list[tuple[int, int]] = []

    @pipeline.step(provides="total")
    async def add(x: int, y: int) -> int:
        runs.append((x, y))
        return x + y

    events: list[StepEvent] = []
    pipeline.events.subscribe(events.append)
    async with pipeline.live(x=1, y=1) as live:
        assert live.revision == 1
        assert await bounded(live.get("total")) == 2
        assert live.push(x=2, y=3) == 2
        assert await bounded(live.get("total")) == 5
    assert runs == [(1, 1), (2, 3)]
    assert [(e.kind, e.revision) for e in events] == [
        ("started", 1),
        ("succeeded", 1),
        ("started", 2),
        ("succeeded", 2),
    ]


async def test_push_of_equal_values_makes_no_revision(pipeline: Pipeline) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=1, z=0) as live:
        assert await bounded(live.get("d")) == (2, 1)
        log.clear()
        assert live.push(a=1) == 1
        assert live.push(a=1.0) == 1  # == says equal
        assert await bounded(live.get("d")) == (2, 1)
        assert log.runs == []
        assert live.stats.revisions == 0


async def test_values_whose_comparison_raises_count_as_different(pipeline: Pipeline) -> None:
    class Opaque:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    runs: list[object] = []

    @pipeline.step(provides="seen")
    async def look(x: object) -> int:
        runs.append(x)
        return len(runs)

    first = Opaque()
    async with pipeline.live(x=first) as live:
        assert await bounded(live.get("seen")) == 1
        assert live.push(x=first) == 1  # the same object is the same value
        assert live.push(x=Opaque()) == 2
        assert await bounded(live.get("seen")) == 2


# -- 3. coalescing ------------------------------------------------------------------------------


async def test_pushes_in_one_iteration_merge_and_the_latest_wins(pipeline: Pipeline) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=0, z=0) as live:
        seen, _ = collect(live, "d")
        await bounded(live.get("d"))
        log.clear()
        revisions = {live.push(a=1), live.push(a=2), live.push(a=3, z=9)}
        assert revisions == {2}
        assert await bounded(live.get("d")) == (6, 1)
    assert log.runs == [("parity", {"a": 3}), ("double", {"a": 3}), ("pair", {"b": 6, "c": 1})]
    assert seen == [(0, 0), (6, 1)]


async def test_pushing_a_value_and_back_in_one_iteration_runs_nothing(pipeline: Pipeline) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=0, z=0) as live:
        seen, _ = collect(live, "d")
        await bounded(live.get("d"))
        log.clear()
        live.push(a=1)
        live.push(a=0)
        assert await bounded(live.get("d")) == (0, 0)
        assert log.runs == []
        assert seen == [(0, 0)]
        assert live.stats.revisions == 0


# -- 4. lazy ------------------------------------------------------------------------------------


async def test_nothing_runs_without_demand(pipeline: Pipeline) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=0, z=0) as live:
        live.push(a=5)
        await asyncio.sleep(0)  # the revision is applied on this iteration
        live.push(z=5)
        await asyncio.sleep(0)
        assert live.stats.revisions == 2
    assert log.runs == []


async def test_push_to_an_input_nothing_observed_depends_on_runs_no_step(
    pipeline: Pipeline,
) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=0, z=0) as live:
        collect(live, "other")
        assert await bounded(live.get("other")) == 0
        assert log.names() == ["negate"]
        log.clear()
        live.push(a=5)
        assert await bounded(live.get("other")) == 0
        assert log.runs == []


# -- 5. minimal, with cutoff --------------------------------------------------------------------


async def test_only_steps_whose_inputs_changed_rerun(pipeline: Pipeline) -> None:
    log = Log()
    diamond(pipeline, log)
    async with pipeline.live(a=1, z=1) as live:
        collect(live, "d")
        collect(live, "other")
        await bounded(live.get("d"))
        log.clear()
        live.push(z=2)
        assert await bounded(live.get("other")) == -2
        assert log.names() == ["negate"]


async def test_equal_output_cuts_off_the_steps_below(pipeline: Pipeline) -> None:
    runs: list[str] = []

    @pipeline.step(provides="parity")
    async def parity(a: int) -> int:
        runs.append("parity")
        return a % 2

    @pipeline.step(provides="label")
    async def label(parity: int) -> str:
        runs.append("label")
        return "odd" if parity else "even"

    async with pipeline.live(a=1) as live:
        seen, _ = collect(live, "label")
        assert await bounded(live.get("label")) == "odd"
        live.push(a=3)  # parity reruns; its output is equal, so label does not
        assert await bounded(live.get("label")) == "odd"
        live.push(a=4)
        assert await bounded(live.get("label")) == "even"
        assert live.stats.cutoffs == 1
    assert runs == ["parity", "label", "parity", "parity", "label"]
    assert seen == ["odd", "even"]


# -- 6. glitch-free -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=12))
def test_diamond_never_mixes_revisions(schedule: list[tuple[int, int]]) -> None:
    """Pushes with random gaps into a diamond whose branches take different numbers of loop
    turns: every run of the join and every emission pairs values of one revision, and
    emissions come in revision order."""
    pipeline = Pipeline()
    joins: list[tuple[int, int]] = []

    @pipeline.step(provides="slow")
    async def slow(a: int) -> int:
        for _ in range(a % 3):
            await asyncio.sleep(0)
        return 10 * a

    @pipeline.step(provides="fast")
    async def fast(a: int) -> int:
        return a

    @pipeline.step(provides="joined")
    async def join(slow: int, fast: int) -> tuple[int, int]:
        joins.append((slow, fast))
        return slow, fast

    async def main() -> tuple[dict[int, int], list[tuple[int, tuple[int, int]]]]:
        emitted: list[tuple[int, tuple[int, int]]] = []  # (latest revision then, value)
        value_of = {1: 0}  # each revision's value of `a`: the last push that returned it
        async with pipeline.live(a=0) as live:
            live.observe("joined").subscribe(lambda v: emitted.append((live.revision, v)))
            for value, gap in schedule:
                value_of[live.push(a=value)] = value
                for _ in range(gap):
                    await asyncio.sleep(0)
            assert await bounded(live.get("joined")) == (10 * schedule[-1][0], schedule[-1][0])
        return value_of, emitted

    value_of, emitted = asyncio.run(main())
    assert all(left == 10 * right for left, right in joins), joins
    # Each emission is the value of a revision made by then, in increasing revision order.
    after = 0
    for latest, (left, right) in emitted:
        assert left == 10 * right, emitted
        matches = [r for r in range(after + 1, latest + 1) if value_of.get(r) == right]
        assert matches, (emitted, value_of)
        after = matches[0]


@pytest.mark.parametrize("a", [3, 4])
async def test_a_result_that_finishes_while_a_step_above_reruns_waits_for_it(
    pipeline: Pipeline, a: int
) -> None:
    """`total` finishes while `parity` (above it) reruns for a new `a`: its result is held
    back; it is used if `parity` comes out equal (a=3), dropped and rerun if not (a=4)."""
    gates = {"parity": asyncio.Event(), "total": asyncio.Event()}
    running = {"parity": asyncio.Event(), "total": asyncio.Event()}
    totals: list[tuple[int, int]] = []

    @pipeline.step(provides="parity")
    async def parity(a: int) -> int:
        running["parity"].set()
        await gates["parity"].wait()
        return a % 2

    @pipeline.step(provides="total")
    async def total(parity: int, b: int) -> int:
        totals.append((parity, b))
        running["total"].set()
        await gates["total"].wait()
        return parity + b

    events: list[tuple[str, str, int | None]] = []
    pipeline.events.subscribe(lambda e: events.append((e.step, e.kind, e.revision)))
    async with pipeline.live(a=1, b=10) as live:
        seen, _ = collect(live, "total")
        gates["parity"].set()
        gates["total"].set()
        assert await bounded(live.get("total")) == 11
        for gate in (*gates.values(), *running.values()):
            gate.clear()
        live.push(b=20)  # revision 2: `total` reruns and waits at its gate
        await bounded(running["total"].wait())
        live.push(a=a)  # revision 3: `parity` reruns and waits; `total` may have to follow
        await bounded(running["parity"].wait())
        gates["total"].set()  # `total` finishes first: held back, `parity` is dirty
        await asyncio.sleep(0)
        assert seen == [11]
        gates["parity"].set()
        expected = a % 2 + 20
        assert await bounded(live.get("total")) == expected
    assert seen == [11, expected]
    total_events = [(kind, revision) for step, kind, revision in events if step == "total"]
    if a == 3:  # parity stayed 1: the held result was used, nothing reran
        assert totals == [(1, 10), (1, 20)]
        assert total_events[-2:] == [("started", 2), ("succeeded", 2)]
    else:  # parity changed: the held result was dropped, and `total` reran with it
        assert totals == [(1, 10), (1, 20), (0, 20)]
        assert total_events[-4:] == [
            ("started", 2),
            ("cancelled", 2),
            ("started", 3),
            ("succeeded", 3),
        ]


# -- 7. stale runs are cancelled ----------------------------------------------------------------


async def test_push_cancels_a_running_step_whose_input_changed(pipeline: Pipeline) -> None:
    started: dict[int, asyncio.Event] = {1: asyncio.Event(), 2: asyncio.Event()}
    release = asyncio.Event()
    cancelled: list[int] = []

    @pipeline.step(provides="out")
    async def work(x: int) -> int:
        started[x].set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return 100 + x

    events: list[StepEvent] = []
    pipeline.events.subscribe(events.append)
    async with pipeline.live(x=1) as live:
        seen, _ = collect(live, "out")
        await bounded(started[1].wait())
        live.push(x=2)
        await bounded(started[2].wait())
        assert cancelled == [1]
        release.set()
        assert await bounded(live.get("out")) == 102
        assert live.stats.cancelled_runs == 1
    assert seen == [102]  # the cancelled run's result is never emitted
    assert ("cancelled", 1) in [(e.kind, e.revision) for e in events]


async def test_runs_a_push_does_not_affect_keep_running(pipeline: Pipeline) -> None:
    gate = asyncio.Event()
    running = asyncio.Event()
    runs: list[str] = []

    @pipeline.step(provides="slow")
    async def slow(a: int) -> int:
        runs.append("slow")
        running.set()
        await gate.wait()
        return a

    @pipeline.step(provides="quick")
    async def quick(b: int) -> int:
        runs.append("quick")
        return b

    @pipeline.step(provides="both")
    async def both(slow: int, quick: int) -> int:
        runs.append("both")
        return slow + quick

    async with pipeline.live(a=1, b=10) as live:
        seen, _ = collect(live, "both")
        await bounded(running.wait())
        live.push(b=20)
        assert await bounded(live.get("quick")) == 20
        gate.set()
        assert await bounded(live.get("both")) == 21
        assert live.stats.cancelled_runs == 0
    assert runs.count("slow") == 1
    assert seen == [21]


async def test_a_started_thread_runs_to_its_end_and_its_result_is_dropped() -> None:
    pool = ThreadPoolExecutor(2)
    pipeline = Pipeline(executor=pool)
    entered = {1: threading.Event(), 2: threading.Event()}
    release = threading.Event()

    @pipeline.step(provides="out")
    def work(x: int) -> int:
        entered[x].set()
        release.wait(BOUND)
        return 100 + x

    async with pipeline.live(x=1) as live:
        seen, _ = collect(live, "out")
        await bounded(asyncio.to_thread(entered[1].wait, BOUND))
        live.push(x=2)
        await bounded(asyncio.to_thread(entered[2].wait, BOUND))
        release.set()
        assert await bounded(live.get("out")) == 102
    assert seen == [102]
    pool.shutdown(wait=True)


async def test_a_queued_executor_call_is_cancelled_before_it_starts() -> None:
    pool = ThreadPoolExecutor(1)
    pipeline = Pipeline(executor=pool)
    busy = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    @pipeline.step(provides="blocker")
    def block(y: int) -> int:
        busy.set()
        release.wait(BOUND)
        return y

    @pipeline.step(provides="out")
    def work(x: int) -> int:
        calls.append(x)
        return x

    cancelled = asyncio.Event()
    pipeline.events.subscribe(lambda e: cancelled.set() if e.kind == "cancelled" else None)
    async with pipeline.live(x=1, y=0) as live:
        collect(live, "blocker")
        await bounded(asyncio.to_thread(busy.wait, BOUND))
        collect(live, "out")
        await asyncio.sleep(0)  # `work(x=1)` is handed to the pool, queued behind the blocker
        live.push(x=2)  # cancels it
        await bounded(cancelled.wait())
        # The task's cancellation reaches the pool's future one loop turn later.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        assert await bounded(live.get("out")) == 2
    assert calls == [2]
    pool.shutdown(wait=True)


# -- 8. errors keep the stream open -------------------------------------------------------------


async def test_failure_keeps_streams_open_and_independent_outputs_update(
    pipeline: Pipeline,
) -> None:
    runs: list[str] = []

    @pipeline.step(provides="checked")
    async def check(a: int) -> int:
        runs.append("check")
        if a < 0:
            raise ValueError(f"negative: {a}")
        return a

    @pipeline.step(provides="shown")
    async def show(checked: int) -> str:
        runs.append("show")
        return f"<{checked}>"

    @pipeline.step(provides="other")
    async def other(z: int) -> int:
        return z

    errors: list[StepEvent] = []
    failed: list[StepEvent] = []
    pipeline.events.subscribe(lambda e: failed.append(e) if e.kind == "failed" else None)
    async with pipeline.live(a=1, z=0) as live:
        live.errors.subscribe(errors.append)
        shown: list[Any] = []
        ends: list[str] = []
        live.observe("shown").subscribe(
            shown.append, lambda e: ends.append("error"), lambda: ends.append("completed")
        )
        others, _ = collect(live, "other")
        assert await bounded(live.get("shown")) == "<1>"
        revision = live.push(a=-1, z=1)
        with pytest.raises(ValueError, match="negative: -1") as caught:
            await bounded(live.get("shown"))
        assert any("`check`" in note for note in caught.value.__notes__)
        assert await bounded(live.get("other")) == 1
        runs.clear()
        live.push(z=2)  # does not affect `check`: it does not rerun
        assert await bounded(live.get("other")) == 2
        with pytest.raises(ValueError):
            await bounded(live.get("shown"))
        assert runs == []
        live.push(a=2)
        assert await bounded(live.get("shown")) == "<2>"
        assert ends == []
    assert ends == ["completed"]
    assert shown == ["<1>", "<2>"]
    assert others == [0, 1, 2]
    assert [(e.step, e.revision) for e in errors] == [("check", revision)]
    assert [(e.step, e.revision) for e in failed] == [("check", revision)]


async def test_invalidate_reruns_a_failed_step(pipeline: Pipeline) -> None:
    fail = [True]

    @pipeline.step(provides="value")
    async def flaky(a: int) -> int:
        if fail[0]:
            raise RuntimeError("not yet")
        return a

    async with pipeline.live(a=7) as live:
        with pytest.raises(RuntimeError):
            await bounded(live.get("value"))
        fail[0] = False
        with pytest.raises(RuntimeError):  # nothing changed: the failure stands
            await bounded(live.get("value"))
        assert live.invalidate("value") == 2
        assert await bounded(live.get("value")) == 7


async def test_invalidate_reruns_what_depends_on_an_input(pipeline: Pipeline) -> None:
    reads: list[int] = []

    @pipeline.step(provides="copy")
    async def copy(a: int) -> int:
        reads.append(a)
        return a

    async with pipeline.live(a=1) as live:
        assert await bounded(live.get("copy")) == 1
        live.invalidate("a")
        assert await bounded(live.get("copy")) == 1
    assert reads == [1, 1]


# -- 9. pins ------------------------------------------------------------------------------------


async def test_a_pushed_provided_resource_wins_until_unpinned(pipeline: Pipeline) -> None:
    runs: list[str] = []

    @pipeline.step(provides=("low", "high"))
    async def bounds(a: int) -> tuple[int, int]:
        runs.append("bounds")
        return a - 1, a + 1

    @pipeline.step(provides="span")
    async def span(low: int, high: int) -> int:
        runs.append("span")
        return high - low

    async with pipeline.live(a=5) as live:
        spans, _ = collect(live, "span")
        lows, _ = collect(live, "low")
        assert await bounded(live.get("span")) == 2
        live.push(low=0)  # pinned: `bounds` still provides `high`
        assert await bounded(live.get("span")) == 6
        live.push(a=10)
        assert await bounded(live.get("span")) == 11
        assert await bounded(live.get("low")) == 0
        runs.clear()
        live.unpin("low")
        assert await bounded(live.get("span")) == 2
        assert runs == ["bounds", "span"]
    assert spans == [2, 6, 11, 2]
    assert lows == [4, 0, 9]


async def test_pinning_every_output_stops_the_provider(pipeline: Pipeline) -> None:
    runs: list[int] = []

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        runs.append(a)
        return a

    @pipeline.step(provides="c")
    async def make_c(b: int) -> int:
        return b * 10

    async with pipeline.live(a=1) as live:
        assert await bounded(live.get("c")) == 10
        live.push(b=3)
        live.push(a=2)  # `make_b` is not needed: `b` is pinned
        assert await bounded(live.get("c")) == 30
        with pytest.raises(ValueError, match="`a` is an input"):
            live.unpin("a")
    assert runs == [1]


# -- 10. close ----------------------------------------------------------------------------------


async def test_close_completes_streams_fails_gets_and_cancels_steps(pipeline: Pipeline) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @pipeline.step(provides="never")
    async def hang(a: int) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return a

    @pipeline.step(provides="waits")
    async def waits(missing: int) -> int:
        return missing

    live = pipeline.live(a=1)
    ends: list[str] = []
    live.observe("never").subscribe(on_completed=lambda: ends.append("never"))
    live.errors.subscribe(on_completed=lambda: ends.append("errors"))
    pending = asyncio.ensure_future(live.get("never"))
    blocked = asyncio.ensure_future(live.get("waits"))  # `missing` was never pushed
    await bounded(started.wait())
    await live.aclose()
    assert cancelled.is_set()
    assert sorted(ends) == ["errors", "never"]
    for future in (pending, blocked):
        with pytest.raises(LiveStoreClosedError):
            await bounded(future)
    with pytest.raises(ScopeClosedError):  # the general class matches too
        live.push(a=2)
    with pytest.raises(LiveStoreClosedError):
        await live.get("never")
    errors: list[Exception] = []
    live.observe("never").subscribe(on_error=errors.append)
    assert [type(e) for e in errors] == [LiveStoreClosedError]
    live.close()  # twice is harmless


async def test_disposing_the_last_subscription_cancels_what_only_it_needed(
    pipeline: Pipeline,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @pipeline.step(provides="slow")
    async def slow(a: int) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return a

    @pipeline.step(provides="shared")
    async def shared(a: int) -> int:
        return a

    async with pipeline.live(a=1) as live:
        first = live.observe("slow").subscribe()
        second = live.observe("slow").subscribe()
        keep = live.observe("shared").subscribe()
        await bounded(started.wait())
        first.dispose()
        await asyncio.sleep(0)
        assert not cancelled.is_set()  # still needed by the second subscription
        second.dispose()
        await bounded(cancelled.wait())
        assert await bounded(live.get("shared")) == 1
        keep.dispose()
        assert live.stats.cancelled_runs == 1


# -- 11. scale ----------------------------------------------------------------------------------


async def test_a_chain_of_10000_steps_updates_at_the_default_recursion_limit() -> None:
    assert sys.getrecursionlimit() == 1000  # Python's default: no recursion per step
    pipeline = Pipeline()

    async def first(x: int) -> int:
        return x

    pipeline.step(provides="r0")(first)
    for i in range(1, 10_000):
        namespace: dict[str, Any] = {}
        exec(f"async def s{i}(r{i - 1}):\n    return r{i - 1} + 1\n", namespace)
        pipeline.step(provides=f"r{i}")(namespace[f"s{i}"])
    async with pipeline.live(x=0) as live:
        seen, _ = collect(live, "r9999")
        assert await asyncio.wait_for(live.get("r9999"), 60) == 9999
        live.push(x=1)
        assert await asyncio.wait_for(live.get("r9999"), 60) == 10_000
        assert live.stats.step_runs == 20_000
    assert seen == [9999, 10_000]


SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "live_soak.py"


@pytest.mark.timeout(300)
def test_memory_stays_flat_over_many_pushes() -> None:
    """The soak script, reduced: 20,000 pushes, traced memory grows by less than 10%."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--pushes", "20000"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"pushes=(\d+) .*traced_growth=(-?[\d.]+)% .*ok=(\w+)", done.stdout)
    assert match is not None, done.stdout
    assert match[1] == "20000" and float(match[2]) < 10 and match[3] == "True", done.stdout


# -- threads, observers, events -----------------------------------------------------------------


async def test_push_from_another_thread_returns_once_applied(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def double(x: int) -> int:
        return 2 * x

    async with pipeline.live(x=1) as live:
        seen, _ = collect(live, "double")
        assert await bounded(live.get("double")) == 2
        revisions = await bounded(asyncio.to_thread(lambda: [live.push(x=n) for n in (2, 3)]))
        assert revisions == [2, 3]  # each handed over on its own loop turn
        assert await bounded(live.get("double")) == 6
        subscribed: list[int] = []
        arrived = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_next(value: int) -> None:
            subscribed.append(value)
            loop.call_soon_threadsafe(arrived.set)

        await bounded(asyncio.to_thread(lambda: live.observe("double").subscribe(on_next)))
        await bounded(arrived.wait())
        assert subscribed == [6]
        assert seen[0] == 2 and seen[-1] == 6


async def test_an_observer_that_raises_does_not_disturb_the_others(
    pipeline: Pipeline, clean_loop: list[dict[str, Any]]
) -> None:
    @pipeline.step(provides="double")
    async def double(x: int) -> int:
        return 2 * x

    def explode(value: int) -> None:
        raise RuntimeError(f"observer broke on {value}")

    async with pipeline.live(x=1) as live:
        live.observe("double").subscribe(explode)
        seen, _ = collect(live, "double")
        assert await bounded(live.get("double")) == 2
        live.push(x=2)
        assert await bounded(live.get("double")) == 4
    assert seen == [2, 4]
    reported = [str(context["exception"]) for context in clean_loop]
    assert reported == ["observer broke on 2", "observer broke on 4"]
    clean_loop.clear()


async def test_get_waits_for_an_input_not_pushed_yet(pipeline: Pipeline) -> None:
    @pipeline.step(provides="greeting")
    async def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    async with pipeline.live() as live:
        waiting = asyncio.ensure_future(live.get("greeting"))
        await asyncio.sleep(0)
        assert not waiting.done()
        live.push(name="ada")
        assert await bounded(waiting) == "hello ada!"
        live.push(punctuation="?")  # a default is overridden by a pushed value
        assert await bounded(live.get("greeting")) == "hello ada?"


async def test_timeouts_and_retries_apply_in_live_stores(pipeline: Pipeline) -> None:
    attempts: list[int] = []

    @pipeline.step(provides="value", retries=2)
    async def flaky(a: int) -> int:
        attempts.append(a)
        if len(attempts) < 3:
            raise RuntimeError("again")
        return a

    @pipeline.step(provides="late", timeout=0.01)
    async def late(a: int) -> int:
        await asyncio.Event().wait()
        return a

    async with pipeline.live(a=1) as live:
        assert await bounded(live.get("value")) == 1
        with pytest.raises(TimeoutError, match="`late`"):
            await bounded(live.get("late"))
        assert live.stats.step_runs == 2
    assert attempts == [1, 1, 1]


async def test_unknown_names_and_cycles_are_refused(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a(b: int) -> int:
        return b

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        return a

    async with pipeline.live() as live:
        with pytest.raises(UnknownTargetError, match="`nope`"):
            live.observe("nope")
        with pytest.raises(UnknownTargetError):
            live.invalidate("nope")
        with pytest.raises(CycleError) as caught:
            await live.get("a")
        assert caught.value.path == ("a", "make_b", "b", "make_a", "a")
        live.push(b=1)  # a pin breaks the cycle
        seen, _ = collect(live, "a")
        assert await bounded(live.get("a")) == 1
        with pytest.raises(CycleError):
            live.unpin("b")  # `a` is observed: its providers would need `a` again
        live.push(b=2)
        assert await bounded(live.get("a")) == 2
        assert seen == [1, 2]


async def test_step_events_outside_live_stores_have_no_revision(pipeline: Pipeline) -> None:
    @pipeline.step(provides="x")
    async def make_x() -> int:
        return 1

    events: list[StepEvent] = []
    pipeline.events.subscribe(events.append)
    await make_x()
    assert [e.revision for e in events] == [None, None]


async def test_a_second_running_loop_is_refused(pipeline: Pipeline) -> None:
    @pipeline.step(provides="double")
    async def double(x: int) -> int:
        return 2 * x

    async with pipeline.live(x=1) as live:
        assert await bounded(live.get("double")) == 2

        def other_loop() -> None:
            asyncio.run(live.get("double"))

        with pytest.raises(StoreInUseError):
            await bounded(asyncio.to_thread(other_loop))
        assert await bounded(asyncio.to_thread(live.push, x=5)) == 2  # pushing is fine
        assert await bounded(live.get("double")) == 10


def test_sync_use_before_a_loop_runs() -> None:
    """Made, pushed and closed outside any loop; used in between inside one."""
    pipeline = Pipeline()

    @pipeline.step(provides="double")
    async def double(x: int) -> int:
        return 2 * x

    with pipeline.live(x=1) as live:
        assert live.push(x=2) == 2

        async def main() -> Any:
            live.push(x=3)
            return await bounded(live.get("double"))

        assert asyncio.run(main()) == 6
        assert live.push(x=4) == 4  # the loop is closed: applied when next used

        async def again() -> Any:
            return await bounded(live.get("double"))

        assert asyncio.run(again()) == 8
