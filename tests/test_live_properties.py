"""Live stores on generated cases: a hypothesis state machine against `reference.LiveReference`.

Each run draws a DAG (from `dags`, up to 20 steps, ``async def`` and plain ``def`` steps), whose
steps return small values (so that equal outputs and cut-offs happen) and fail on some inputs,
and opens a live store on it. Then, in random order: pushes of inputs and pins of provided
resources (each followed by a random number of loop turns, so runs overlap, get cancelled or
held back), unpins, invalidations, subscriptions, disposals, and settles. After every settle:

- every ``get`` of an observed resource gives the oracle's value (or raises its failure);
- every subscription's latest emission is the oracle's value, and each emission was the
  settled value of the latest revision at the time, in increasing revision order;
- each step ran at most once per revision, with exactly the oracle's inputs of that revision
  (never a mix of revisions), and only when one of its inputs changed since its last finished
  run (or an invalidation or unpin asked for it);
- no task of the library is left but cancelled ones finishing, and nothing reached the loop's
  exception handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections import Counter
from typing import Any

import pytest
from conftest import eager_tasks_requested, new_eager_loop
from dags import Dag, Node, dags, default_of, mix, register
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    rule,
)
from reactivex import abc
from reference import MISSING, Err, LiveReference, StepSpec

from pipeliner_rx import LiveStore, Pipeline, StepEvent

BOUND = 10.0
REVISION: contextvars.ContextVar[int] = contextvars.ContextVar("revision")

pytestmark = pytest.mark.timeout(600)

# Whether this run asked for eager tasks (`--eager-tasks`): the machine makes its own loop.
EAGER = [False]


@pytest.fixture(autouse=True)
def eager_option(request: pytest.FixtureRequest) -> None:
    EAGER[0] = eager_tasks_requested(request.config)


class Boom(Exception):
    """What a generated step raises; ``args[0]`` is the step's name."""


def outcome(node: Node, kwargs: dict[str, Any]) -> Any:
    """A step's deterministic result: small values, and a failure on about one input in 6."""
    inputs = tuple(kwargs[name] for name in node.needs)
    if mix("fail", node.name, inputs) % 6 == 0:
        raise Boom(node.name)
    modulus = (2, 3, 1000)[mix("modulus", node.name) % 3]
    if len(node.provides) > 1:
        return tuple(mix(node.name, j, inputs) % modulus for j in range(len(node.provides)))
    return mix(node.name, inputs) % modulus


class Subscription:
    def __init__(self, name: str, disposable: abc.DisposableBase | None = None) -> None:
        self.name = name
        self.emitted: list[tuple[int, Any]] = []  # (latest revision then, value)
        self.disposable = disposable


class LiveMachine(RuleBasedStateMachine):
    subscriptions = Bundle("subscriptions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = new_eager_loop() if EAGER[0] else asyncio.new_event_loop()
        self.reports: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _, context: self.reports.append(context))
        self.runs: list[tuple[str, int, dict[str, Any]]] = []  # (step, revision, inputs)
        self.events: Counter[tuple[str, str, int]] = Counter()  # (kind, step, revision)
        self.finished: list[tuple[str, int]] = []  # runs that succeeded or failed
        self.forced: list[tuple[str, int]] = []  # (step, revision) of invalidations and unpins
        self.pushed_at: dict[int, dict[str, Any]] = {}
        self.states: dict[int, dict[str, Any]] = {}
        self.active: list[Subscription] = []

    # -- setup --------------------------------------------------------------------------------

    @initialize(
        dag=dags(max_steps=20).filter(lambda d: bool(d.inputs and d.provided)), data=st.data()
    )
    def open_store(self, dag: Dag, data: st.DataObject) -> None:
        self.dag = dag
        self.pipeline = Pipeline()
        for node in dag.nodes:
            register(self.pipeline, node, self.step_fn(node))
        self.specs = [
            StepSpec(
                node.name,
                node.needs,
                node.provides,
                lambda node=node, **kwargs: outcome(node, kwargs),
                {name: default_of(node, name) for name in node.defaults},
            )
            for node in dag.nodes
        ]
        self.reference = LiveReference(self.specs)
        self.pipeline.events.subscribe(self.on_event)
        unpushed = (
            data.draw(st.sets(st.sampled_from(dag.inputs), max_size=1)) if dag.inputs else set()
        )
        self.pushed = {
            name: data.draw(st.integers(0, 3)) for name in dag.inputs if name not in unpushed
        }
        self.live: LiveStore = self.pipeline.live(**self.pushed)
        self.pushed_at[1] = dict(self.pushed)
        self.spin(self.live.__aenter__())

    def step_fn(self, node: Node) -> Any:
        def record(kwargs: dict[str, Any]) -> None:
            self.runs.append((node.name, REVISION.get(), dict(kwargs)))

        turns = mix("turns", node.name) % 3
        if node.is_async:

            async def run_async(**kwargs: Any) -> Any:
                record(kwargs)
                for _ in range(turns):
                    await asyncio.sleep(0)
                return outcome(node, kwargs)

            return run_async

        def run_sync(**kwargs: Any) -> Any:
            record(kwargs)
            if turns:
                time.sleep(0.0005)
            return outcome(node, kwargs)

        return run_sync

    def on_event(self, event: StepEvent) -> None:
        assert event.revision is not None
        self.events[event.kind, event.step, event.revision] += 1
        if event.kind == "started":
            # Emitted in the run's own task, just before the step is called: the step (or the
            # executor thread, which gets a copy of the task's context) reads it there.
            REVISION.set(event.revision)
        elif event.kind in ("succeeded", "failed"):
            self.finished.append((event.step, event.revision))

    # -- driving ------------------------------------------------------------------------------

    def spin(self, awaitable: Any) -> Any:
        async def bounded() -> Any:
            # `asyncio.timeout`, not `wait_for`: no extra task, so checks see only the library's.
            async with asyncio.timeout(BOUND):
                return await awaitable

        return self.loop.run_until_complete(bounded())

    def turns(self, count: int) -> None:
        async def go() -> None:
            for _ in range(count):
                await asyncio.sleep(0)

        self.spin(go())

    def record(self, revision: int) -> None:
        self.pushed_at[revision] = dict(self.pushed)
        self.states.pop(revision, None)

    def state(self, revision: int) -> dict[str, Any]:
        state = self.states.get(revision)
        if state is None:
            state = self.states[revision] = self.reference.state(self.pushed_at[revision])
        return state

    @property
    def names(self) -> list[str]:
        """The resources the store knows: provided, needed, or pushed."""
        needed = {name for node in self.dag.nodes for name in node.needs}
        inputs = [name for name in self.dag.inputs if name in needed or name in self.pushed]
        return [*inputs, *self.dag.provided]

    # -- rules --------------------------------------------------------------------------------

    @rule(data=st.data(), turns=st.integers(0, 6))
    def push(self, data: st.DataObject, turns: int) -> None:
        candidates = [*self.dag.inputs] * 3 + self.dag.provided
        if not candidates:
            return
        names = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3))
        values = {name: data.draw(st.integers(0, 3)) for name in names}
        self.pushed.update(values)
        self.record(self.live.push(**values))
        self.turns(turns)

    @rule(data=st.data(), turns=st.integers(0, 4))
    def unpin(self, data: st.DataObject, turns: int) -> None:
        pinned = [name for name in self.dag.provided if name in self.pushed]
        if not pinned:
            return
        name = data.draw(st.sampled_from(pinned))
        del self.pushed[name]
        revision = self.live.unpin(name)
        self.record(revision)
        self.forced.append((self.reference.providers[name].name, revision))
        self.turns(turns)

    @rule(data=st.data(), turns=st.integers(0, 4))
    def invalidate(self, data: st.DataObject, turns: int) -> None:
        if not self.names:
            return
        name = data.draw(st.sampled_from(self.names))
        revision = self.live.invalidate(name)
        self.record(revision)
        provider = self.reference.providers.get(name)
        if provider is not None and name not in self.pushed:
            self.forced.append((provider.name, revision))
        else:
            for node in self.dag.nodes:
                if name in node.needs and node.provides:
                    self.forced.append((node.name, revision))
        self.turns(turns)

    @rule(target=subscriptions, data=st.data(), turns=st.integers(0, 4))
    def subscribe(self, data: st.DataObject, turns: int) -> Subscription:
        subscription = Subscription(data.draw(st.sampled_from(self.names)))
        live = self.live
        subscription.disposable = live.observe(subscription.name).subscribe(
            lambda value: subscription.emitted.append((live.revision, value))
        )
        self.active.append(subscription)
        self.turns(turns)
        return subscription

    @rule(subscription=consumes(subscriptions))
    def dispose(self, subscription: Subscription) -> None:
        assert subscription.disposable is not None
        subscription.disposable.dispose()
        self.active.remove(subscription)

    @rule()
    def settle(self) -> None:
        current = self.state(self.live.revision)
        for name in sorted({s.name for s in self.active}):
            expected = current.get(name, MISSING)
            if expected is MISSING:
                continue  # it waits for an input nobody pushed: a get would wait too
            try:
                got = self.spin(self.live.get(name))
            except Boom as exc:
                assert isinstance(expected, Err), (name, exc, expected)
                assert exc.args[0] == expected.source, (name, exc, expected)
            else:
                assert got == expected, (name, got, expected)
        self.spin(self.finish_runs())
        self.check()

    async def finish_runs(self) -> None:
        """Wait for the runs still going: cancelled ones, and those of needed steps below an
        input nobody pushed (no ``get`` waits for them). No new revision comes meanwhile, so
        this ends."""
        current = asyncio.current_task()
        while True:
            leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            if not leftover:
                return
            await asyncio.wait(leftover)

    # -- checks -------------------------------------------------------------------------------

    def check(self) -> None:
        assert self.reports == [], self.reports
        latest = self.live.revision
        current = self.state(latest)
        for subscription in self.active:
            expected = current.get(subscription.name, MISSING)
            if expected is not MISSING and not isinstance(expected, Err):
                assert subscription.emitted, subscription.name
                assert subscription.emitted[-1][1] == expected, (subscription.name, expected)
            after = 0
            for at, value in subscription.emitted:
                # Settled values are those of the latest applied revision: `at`, or `at - 1`
                # while a revision was still pending.
                matches = [
                    r
                    for r in (at - 1, at)
                    if r > after
                    and r in self.pushed_at
                    and self.state(r).get(subscription.name, MISSING) == value
                ]
                assert matches, (subscription.name, subscription.emitted)
                after = matches[0]
        # At most one run per step and revision: a second one only after the first was
        # cancelled (its demand was withdrawn and came back), and at most one finishes.
        for (kind, name, revision), count in self.events.items():
            if kind == "started":
                assert count - self.events["cancelled", name, revision] <= 1, (name, revision)
            elif kind in ("succeeded", "failed"):
                assert count == 1, (kind, name, revision)
        # A run cancelled before its step was called counts, but left no entry.
        assert self.live.stats.step_runs >= len(self.runs)
        specs = self.reference.steps
        for index, (name, revision, kwargs) in enumerate(self.runs):
            spec = specs[name]
            state = self.state(revision)
            expected = {need: self.reference.argument(state, spec, need) for need in spec.needs}
            assert kwargs == expected, (name, revision, kwargs, expected)
            earlier = [r for step, r in self.finished if step == name and r < revision]
            if not earlier:
                continue
            since = max(earlier)
            if any(step == name and since < r <= revision for step, r in self.forced):
                continue
            changed = any(
                len(
                    {
                        repr(self.reference.argument(self.state(r), spec, need))
                        for r in range(since, revision + 1)
                        if r in self.pushed_at
                    }
                )
                > 1
                for need in spec.needs
            )
            assert changed, (name, since, revision, index)

    def teardown(self) -> None:
        try:
            if hasattr(self, "live"):
                self.settle()
                self.spin(self.live.aclose())
                for subscription in self.active:
                    assert subscription.disposable is not None
                    subscription.disposable.dispose()
                leftover = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                assert leftover == []
                assert self.reports == []
        finally:
            self.loop.close()


TestLiveStore = LiveMachine.TestCase
# LIVE_EXAMPLES=2000 LIVE_NOSHRINK=1 for a longer hunt (shrinking a machine takes minutes).
TestLiveStore.settings = settings(
    max_examples=int(os.environ.get("LIVE_EXAMPLES", "150")),
    stateful_step_count=30,
    deadline=None,
    phases=[Phase.generate] if os.environ.get("LIVE_NOSHRINK") else list(Phase),
)
