"""Property tests: on random DAGs the library computes what the sequential oracle computes.

Each example draws a DAG (up to 60 steps, 0-3 outputs each, random fan-in, some parameters with
defaults, ``async def`` and plain ``def`` steps, sleeps of 0 or 1 ms), pre-seeded resources and
targets, runs them on a fresh `Pipeline` in a fresh event loop, and compares the results and
the steps that ran with `reference.Reference`. The graphs and checks come from `dags`, shared
with ``test_faults.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from dags import (
    EXAMPLES,
    Dag,
    Log,
    Target,
    build,
    check_outcome,
    complete,
    dags,
    demand,
    expect,
    mix,
    run,
    seedings,
    settle,
    starts,
    targets,
)
from hypothesis import given
from hypothesis import strategies as st
from reference import Reference

from pipeliner_rx import MissingResourceError

# Passing runs take seconds; a failing property shrinks for up to a few minutes (Hypothesis'
# own limit) before it prints its minimal example, which the default 60 s would cut off.
pytestmark = pytest.mark.timeout(600)


@st.composite
def cases(draw: st.DrawFn, calls: int = 1) -> tuple[Dag, dict[str, Any], list[Target]]:
    """A DAG, its seeds (complete for resource targets) and ``calls`` targets."""
    dag = draw(dags())
    seeds = draw(seedings(dag))
    wanted = draw(st.lists(targets(dag), min_size=calls, max_size=max(calls, 1)))
    complete(dag.specs(), seeds, wanted)
    return dag, seeds, wanted


@EXAMPLES
@given(cases())
def test_call_agrees_with_reference(case: tuple[Dag, dict[str, Any], list[Target]]) -> None:
    """One call: the same value (or missing resources), and exactly the oracle's steps run."""
    dag, seeds, (target,) = case
    reference = Reference(dag.specs(), seeds)
    expected = expect(reference, target)
    log: Log = []
    pipeline, steps = build(dag, log)

    async def main() -> Any:
        pipeline.add_environment_resources(**seeds)
        try:
            got = await demand(pipeline, steps, target)
        except MissingResourceError as exc:
            got = exc
        await settle(pipeline)
        return got

    check_outcome(run(main), expected)
    assert starts(log) == Counter(reference.ran)


@EXAMPLES
@given(cases(calls=4))
def test_calls_in_turn_run_each_step_once_per_store(
    case: tuple[Dag, dict[str, Any], list[Target]],
) -> None:
    """Calls one after another, in the pipeline's store and then in a scope: each step with
    outputs runs at most once per store, and exactly the oracle's steps run in each."""
    dag, seeds, wanted = case
    references = [Reference(dag.specs(), seeds), Reference(dag.specs(), seeds)]
    expected = [[expect(reference, target) for target in wanted] for reference in references]
    log: Log = []
    pipeline, steps = build(dag, log)

    async def calls() -> list[Any]:
        got = []
        for target in wanted:
            try:
                got.append(await demand(pipeline, steps, target))
            except MissingResourceError as exc:
                got.append(exc)
        return got

    async def main() -> tuple[list[Any], list[Any], int]:
        pipeline.add_environment_resources(**seeds)
        outside = await calls()
        async with pipeline.scope() as scope:
            inside = await calls()
        await settle(pipeline)
        return outside, inside, scope.id

    outside, inside, scope_id = run(main)
    for got, want in zip([*outside, *inside], [*expected[0], *expected[1]], strict=True):
        check_outcome(got, want)
    with_outputs = {node.name for node in dag.nodes if node.provides}
    for store, reference in zip((0, scope_id), references, strict=True):
        counts = starts(log, store)
        assert all(counts[name] <= 1 for name in with_outputs), counts
        assert counts == Counter(reference.ran)
    assert {where for where, _ in log} <= {0, scope_id}


@EXAMPLES
@given(cases(calls=5))
def test_concurrent_calls_agree_with_reference(
    case: tuple[Dag, dict[str, Any], list[Target]],
) -> None:
    """Several targets under ``asyncio.gather``: the oracle's values, its steps, each once."""
    dag, seeds, wanted = case
    reference = Reference(dag.specs(), seeds)
    expected = [expect(reference, target) for target in wanted]
    log: Log = []
    pipeline, steps = build(dag, log)

    async def main() -> list[Any]:
        pipeline.add_environment_resources(**seeds)
        got = await asyncio.gather(
            *(demand(pipeline, steps, target) for target in wanted), return_exceptions=True
        )
        await settle(pipeline)
        return got

    for got, want in zip(run(main), expected, strict=True):
        check_outcome(got, want)
    assert starts(log) == Counter(reference.ran)


@EXAMPLES
@given(cases(calls=3), st.data())
def test_concurrent_scopes_stay_apart(
    case: tuple[Dag, dict[str, Any], list[Target]], data: st.DataObject
) -> None:
    """The same targets at once in the pipeline's store and two scopes with other values:
    each store gets its own oracle's results, and runs its own steps, each once."""
    dag, seeds, wanted = case
    names = [*dag.inputs, *dag.provided]
    overrides = [
        {name: mix("scope", i, name) for name in data.draw(st.sets(st.sampled_from(names)))}
        if names
        else {}
        for i in range(2)
    ]
    stores = [seeds, *({**seeds, **override} for override in overrides)]
    references = [Reference(dag.specs(), values) for values in stores]
    expected = [[expect(reference, target) for target in wanted] for reference in references]
    log: Log = []
    pipeline, steps = build(dag, log)

    async def gather() -> list[Any]:
        return await asyncio.gather(
            *(demand(pipeline, steps, target) for target in wanted), return_exceptions=True
        )

    async def in_scope(override: dict[str, Any]) -> tuple[int, list[Any]]:
        async with pipeline.scope(**override) as scope:
            return scope.id, await gather()

    async def main() -> tuple[list[Any], list[tuple[int, list[Any]]]]:
        pipeline.add_environment_resources(**seeds)
        outside, *scoped = await asyncio.gather(
            gather(), *(in_scope(override) for override in overrides)
        )
        await settle(pipeline)
        return outside, scoped

    outside, scoped = run(main)
    ids = [0, *(scope_id for scope_id, _ in scoped)]
    results = [outside, *(got for _, got in scoped)]
    for store, got_all, want_all, reference in zip(ids, results, expected, references, strict=True):
        for got, want in zip(got_all, want_all, strict=True):
            check_outcome(got, want)
        assert starts(log, store) == Counter(reference.ran)
    assert {where for where, _ in log} <= set(ids)
