"""Bad input from generated cases: each error class, naming the right step and resource, no hang.

Cycles of length 1-5, missing inputs deep in a graph, duplicate providers, wrong output counts
and conflicting values, each raising its own `PipelineError` subclass. Every await is bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dags import Dag, Node, build, dags, pure_step, register, run
from helpers import add_step
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeliner_rx import (
    CycleError,
    DuplicateProviderError,
    MissingResourceError,
    Pipeline,
    ResourceConflictError,
    StepOutputError,
)

# Passing runs take seconds; a failing property shrinks for up to a few minutes (Hypothesis'
# own limit) before it prints its minimal example, which the default 60 s would cut off.
pytestmark = pytest.mark.timeout(600)

WAIT = 5.0  # seconds any one await may take before it counts as a hang
EXAMPLES = settings(max_examples=200, deadline=None)


def recorder(name: str, ran: list[str], is_async: bool) -> Any:
    """A step function that records its run and returns the sum of its inputs."""
    if is_async:

        async def run_async(**kwargs: int) -> int:
            ran.append(name)
            return sum(kwargs.values())

        return run_async

    def run_sync(**kwargs: int) -> int:
        ran.append(name)
        return sum(kwargs.values())

    return run_sync


def backticked(names: Any) -> list[str]:
    """``names`` as the messages quote them."""
    return [f"`{name}`" for name in names]


@EXAMPLES
@given(
    length=st.integers(1, 5),
    entry=st.integers(0, 4),
    depth=st.integers(0, 4),
    is_async=st.booleans(),
    supplied=st.integers(0, 4),
)
def test_cycle_raises_cycle_error_naming_the_cycle(
    length: int, entry: int, depth: int, is_async: bool, supplied: int
) -> None:
    """``c{i}`` provides ``q{i}`` from ``q{i+1}`` (mod length), reached through a chain of
    ``depth`` steps; a call and ``resource()`` both raise, and supplying any resource of the
    cycle breaks it."""
    pipeline = Pipeline()
    ran: list[str] = []
    cycle = [f"c{i}" for i in range(length)]
    resources = [f"q{i}" for i in range(length)]
    for i in range(length):
        add_step(
            pipeline,
            cycle[i],
            [resources[(i + 1) % length], "x"],
            resources[i],
            recorder(cycle[i], ran, is_async),
        )
    previous = resources[entry % length]
    for j in range(depth):
        add_step(pipeline, f"h{j}", [previous, "x"], f"p{j}", recorder(f"h{j}", ran, is_async))
        previous = f"p{j}"
    target = add_step(pipeline, "target", [previous], None, recorder("target", ran, is_async))
    needs = {name: [resources[(i + 1) % length], "x"] for i, name in enumerate(cycle)}
    provides = dict(zip(cycle, resources, strict=True))

    def check(error: CycleError) -> None:
        path = error.path
        assert len(path) == 2 * length + 1 and path[0] == path[-1]
        assert sorted(path[1::2]) == sorted(cycle)
        assert sorted(path[0:-1:2]) == sorted(resources)
        for k in range(length):  # data-flow order: resource -> step needing it -> its output
            step = path[2 * k + 1]
            assert path[2 * k] in needs[step] and path[2 * k + 2] == provides[step]
        assert error.resource == path[0]
        message = str(error)
        assert " -> ".join(path) in message
        assert all(name in message for name in backticked(cycle))

    async def main() -> Any:
        with pytest.raises(CycleError) as info:
            await asyncio.wait_for(target(x=1), WAIT)
        check(info.value)
        with pytest.raises(CycleError) as info:
            await asyncio.wait_for(pipeline.resource(resources[entry % length]), WAIT)
        check(info.value)
        assert ran == []
        # The rejected call stored nothing (`x` too must be given again); supplying one
        # resource of the cycle leaves a chain: the call computes.
        assert not pipeline.resource_ready("x")
        return await asyncio.wait_for(target(x=1, **{resources[supplied % length]: 10}), WAIT)

    assert isinstance(run(main), int)
    assert "target" in ran


@EXAMPLES
@given(
    depth=st.integers(1, 25),
    sides=st.lists(st.booleans(), min_size=25, max_size=25),
    is_async=st.booleans(),
    second=st.integers(0, 24) | st.none(),
)
def test_missing_input_deep_in_the_graph_names_resource_and_chain(
    depth: int, sides: list[bool], is_async: bool, second: int | None
) -> None:
    """``target`` <- ``h{depth-1}`` <- ... <- ``h0``, which needs ``deep``: nothing provides it.
    Side steps feed the chain; an optional second missing input sits at another depth."""
    pipeline = Pipeline()
    ran: list[str] = []
    chain = [f"h{j}" for j in range(depth)]
    later = second is not None and second < depth
    for j, name in enumerate(chain):
        needs = [f"p{j - 1}" if j else "deep"]
        if sides[j]:
            add_step(pipeline, f"side{j}", ["x"], f"s{j}", recorder(f"side{j}", ran, is_async))
            needs.append(f"s{j}")
        if later and j == second:
            needs.append("other")
        add_step(pipeline, name, needs, f"p{j}", recorder(name, ran, is_async))
    target = add_step(
        pipeline, "target", [f"p{depth - 1}"], None, recorder("target", ran, is_async)
    )
    needed_by = (*chain, "target")

    async def main() -> None:
        with pytest.raises(MissingResourceError) as info:
            await asyncio.wait_for(target(x=1), WAIT)
        error = info.value
        assert error.resource == "deep" and error.needed_by == needed_by
        assert error.step == "target"
        missing = {"deep": needed_by}
        if later:
            assert second is not None
            missing["other"] = needed_by[second:]
        assert dict(error.missing) == missing
        message = str(error)
        assert "`deep`" in message and " <- ".join(backticked(needed_by)) in message
        assert ran == []
        # The rejected call stored nothing; with every input given, the same call computes.
        assert not pipeline.resource_ready("x")
        await asyncio.wait_for(target(x=1, deep=1, other=2), WAIT)

    run(main)
    assert sorted(ran) == sorted(
        [*chain, "target", *(f"side{j}" for j in range(depth) if sides[j])]
    )


@EXAMPLES
@given(dags(max_steps=20).filter(lambda dag: bool(dag.provided)), st.data())
def test_duplicate_provider_raises_and_changes_nothing(dag: Dag, data: st.DataObject) -> None:
    """A second step providing an already provided resource is refused at registration."""
    pipeline, _ = build(dag, [])
    before = pipeline.steps
    nodes = {name: node for node in dag.nodes for name in node.provides}
    resource = data.draw(st.sampled_from(sorted(nodes)))
    existing = nodes[resource].name
    needs = data.draw(st.lists(st.sampled_from([*dag.inputs, "x"]), max_size=3, unique=True))
    with pytest.raises(DuplicateProviderError) as info:
        add_step(pipeline, "intruder", needs, resource, recorder("intruder", [], True))
    error = info.value
    assert (error.resource, error.step, error.existing) == (resource, "intruder", existing)
    assert all(name in str(error) for name in backticked([resource, "intruder", existing]))
    assert pipeline.steps == before
    # The same function name again (same module) replaces the step: a re-run definition.
    register(pipeline, nodes[resource], pure_step(pipeline, nodes[resource], []))
    assert len(pipeline.steps) == len(before)


def wrong_outputs(count: int) -> st.SearchStrategy[Any]:
    """Return values that do not fit ``count`` outputs: not a tuple or list of that length."""
    wrong_length = st.integers(0, 5).filter(lambda n: n != count)
    return st.one_of(
        st.integers(),
        st.none(),
        st.text(min_size=count, max_size=count),
        st.dictionaries(st.text(max_size=2), st.integers(), min_size=count, max_size=count),
        wrong_length.map(lambda n: tuple(range(n))),
        wrong_length.map(lambda n: list(range(n))),
    )


@EXAMPLES
@given(st.integers(2, 3).flatmap(lambda n: st.tuples(st.just(n), wrong_outputs(n))), st.booleans())
def test_wrong_output_count_fails_every_output(case: tuple[int, Any], is_async: bool) -> None:
    """``bad`` returns the wrong shape: the caller, each output's waiter and each dependent's
    caller get `StepOutputError` naming ``bad`` and its outputs; no dependent runs."""
    count, value = case
    pipeline = Pipeline()
    ran: list[str] = []
    outputs = tuple(f"o{j}" for j in range(count))
    node = Node("bad", ("x",), (), outputs, is_async, 0.0)

    def returns(**_: Any) -> Any:
        ran.append("bad")
        return value

    async def returns_async(**_: Any) -> Any:
        ran.append("bad")
        return value

    bad = register(pipeline, node, returns_async if is_async else returns)
    users = [
        add_step(pipeline, f"use{j}", [name], f"u{j}", recorder(f"use{j}", ran, is_async))
        for j, name in enumerate(outputs)
    ]
    final = add_step(
        pipeline, "final", [f"u{j}" for j in range(count)], None, recorder("final", ran, is_async)
    )

    async def main() -> list[Any]:
        pipeline.add_environment_resources(x=1)
        calls = [
            bad(),
            final(),
            *(use() for use in users),
            *(pipeline.resource(name) for name in outputs),
        ]
        bounded = [asyncio.wait_for(call, WAIT) for call in calls]
        return await asyncio.gather(*bounded, return_exceptions=True)

    for error in run(main):
        assert isinstance(error, StepOutputError), error
        assert error.step == "bad" and error.provides == outputs and error.value == value
        assert all(name in str(error) for name in backticked(["bad", *outputs]))
    assert set(ran) == {"bad"}


@EXAMPLES
@given(
    st.dictionaries(st.sampled_from(["a", "b", "x", "y"]), st.integers(-5, 5), min_size=1),
    st.data(),
)
def test_conflicting_value_is_refused_and_sets_nothing(
    seeds: dict[str, int], data: st.DataObject
) -> None:
    """A call or a push giving a present resource a different value raises
    `ResourceConflictError` naming it, sets none of the values it came with, and runs
    nothing; an equal value is fine; a scope may override, then conflicts within itself."""
    resource = data.draw(st.sampled_from(sorted(seeds)))
    current = seeds[resource]
    new = data.draw(st.integers(-5, 5).filter(lambda v: v != current))
    pipeline = Pipeline()
    ran: list[str] = []
    target = add_step(pipeline, "target", sorted(seeds), None, recorder("target", ran, True))

    def check(error: ResourceConflictError) -> None:
        assert (error.resource, error.current, error.new) == (resource, current, new)
        assert f"`{resource}`" in str(error) and repr(new) in str(error)

    async def main() -> None:
        pipeline.add_environment_resources(**seeds)
        with pytest.raises(ResourceConflictError) as info:
            await asyncio.wait_for(target(**{resource: new, "fresh": 1}), WAIT)
        check(info.value)
        assert ran == [] and not pipeline.resource_ready("fresh")
        with pytest.raises(ResourceConflictError) as info:
            pipeline.add_environment_resources(**{"fresh": 1, resource: new})
        check(info.value)
        assert not pipeline.resource_ready("fresh")
        assert await asyncio.wait_for(target(**{resource: current}), WAIT) == sum(seeds.values())
        async with pipeline.scope(**{resource: new}) as scope:
            assert await asyncio.wait_for(scope.resource(resource), WAIT) == new
            with pytest.raises(ResourceConflictError):
                scope.add_environment_resources(**{resource: current})
        assert await asyncio.wait_for(pipeline.resource(resource), WAIT) == current

    run(main)
    assert ran == ["target"]
