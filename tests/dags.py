"""Generated DAGs for the property and fault tests: strategies, oracle glue and checks."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from reference import Missing, Reference, StepSpec

from pipeliner_rx import MissingResourceError, Pipeline, Step

T = TypeVar("T")

BOUND = 10.0  # seconds a whole example may take before it counts as a hang
EXAMPLES = settings(max_examples=200, deadline=None)

Target = tuple[str, str]  # ("step", step name) or ("resource", resource name)
Log = list[tuple[int, str]]  # (store id, step name) per step start


# -- graphs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A generated step: what it needs (some with defaults), provides, and how it runs."""

    name: str
    needs: tuple[str, ...]
    defaults: tuple[str, ...]
    provides: tuple[str, ...]
    is_async: bool
    sleep: float


@dataclass(frozen=True)
class Dag:
    """A generated graph: steps in topological order and the inputs nothing provides."""

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]

    @property
    def provided(self) -> list[str]:
        """Every resource some step provides."""
        return [name for node in self.nodes for name in node.provides]

    def specs(self, fn: Callable[[Node], Callable[..., Any]] | None = None) -> list[StepSpec]:
        """The graph for the oracle; ``fn`` gives each node's function (default: `pure`)."""
        return [
            StepSpec(
                node.name,
                node.needs,
                node.provides,
                fn(node) if fn is not None else _pure_of(node),
                {name: default_of(node, name) for name in node.defaults},
            )
            for node in self.nodes
        ]


def mix(*parts: object) -> int:
    """A deterministic hash of ``parts``: the value a pure step computes from its inputs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def default_of(node: Node, name: str) -> int:
    """The default value of parameter ``name`` of ``node``."""
    return mix("default", node.name, name)


def pure(node: Node, kwargs: dict[str, Any]) -> Any:
    """What ``node`` returns for its inputs: one value per output, a tuple for several."""
    inputs = tuple(kwargs[name] for name in node.needs)
    if len(node.provides) > 1:
        return tuple(mix(node.name, j, inputs) for j in range(len(node.provides)))
    return mix(node.name, inputs)


def _pure_of(node: Node) -> Callable[..., Any]:
    return lambda **kwargs: pure(node, kwargs)


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 60) -> Dag:
    """Random DAGs: each step needs up to 4 earlier resources, often recent ones (depth)."""
    inputs = tuple(f"in{i}" for i in range(draw(st.integers(0, 4))))
    available = list(inputs)
    nodes = []
    for i in range(draw(st.integers(1, max_steps))):
        needs: tuple[str, ...] = ()
        if available:
            pool = available[-6:] if draw(st.booleans()) else available
            needs = tuple(draw(st.lists(st.sampled_from(pool), max_size=4, unique=True)))
        defaults = tuple(name for name in needs if draw(st.integers(0, 7)) == 0)
        outputs = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
        provides = tuple(f"r{i}{'abc'[j]}" for j in range(outputs))
        is_async = draw(st.booleans())
        sleep = draw(st.sampled_from([0.0, 0.0, 0.001]))
        nodes.append(Node(f"s{i}", needs, defaults, provides, is_async, sleep))
        available.extend(provides)
    return Dag(tuple(nodes), inputs)


@st.composite
def seedings(draw: st.DrawFn, dag: Dag) -> dict[str, Any]:
    """Pre-seeded values: the inputs but at most one, and some provided resources."""
    unseeded = draw(st.sets(st.sampled_from(dag.inputs), max_size=1)) if dag.inputs else set()
    seeds: dict[str, Any] = {name: mix("seed", name) for name in dag.inputs if name not in unseeded}
    if dag.provided:
        for name in draw(st.lists(st.sampled_from(dag.provided), max_size=8, unique=True)):
            seeds[name] = draw(st.integers(-3, 3))
    return seeds


def targets(dag: Dag) -> st.SearchStrategy[Target]:
    """A step to call or a resource to ask for."""
    steps = st.sampled_from([node.name for node in dag.nodes]).map(lambda n: ("step", n))
    resources = [*dag.inputs, *dag.provided]
    if not resources:
        return steps
    return st.one_of(steps, st.sampled_from(resources).map(lambda n: ("resource", n)))


def complete(specs: Sequence[StepSpec], seeds: dict[str, Any], wanted: list[Target]) -> None:
    """Seed what the resource targets miss: `Pipeline.resource` would wait for a push."""
    reference = Reference(specs, seeds)
    for kind, name in wanted:
        if kind != "resource" or name in seeds:
            continue
        provider = reference.providers.get(name)
        try:
            if provider is None:
                raise Missing({name})
            reference.needed(provider)
        except Missing as missing:
            for input_name in missing.names:
                seeds[input_name] = reference.values[input_name] = mix("late", input_name)


# -- the library side --------------------------------------------------------------------------


def register(pipeline: Pipeline, node: Node, fn: Any, **options: Any) -> Step[Any]:
    """Register ``fn`` as ``node``: like ``helpers.add_step``, with defaults and tuple outputs."""
    fn.__name__ = fn.__qualname__ = node.name
    fn.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default_of(node, name)
                if name in node.defaults
                else inspect.Parameter.empty,
            )
            for name in node.needs
        ]
    )
    return pipeline.step(provides=node.provides or None, **options)(fn)


def store_id(pipeline: Pipeline) -> int:
    """The id of the store the current step runs in (0: the pipeline's own store)."""
    store = pipeline._engine.scope_var.get()
    return store.id if store is not None else 0


def pure_step(pipeline: Pipeline, node: Node, log: Log) -> Any:
    """``node``'s function for the library: logs its start, sleeps if asked, returns `pure`."""
    if node.is_async:

        async def run_async(**kwargs: Any) -> Any:
            log.append((store_id(pipeline), node.name))
            if node.sleep:
                await asyncio.sleep(node.sleep)
            return pure(node, kwargs)

        return run_async

    def run_sync(**kwargs: Any) -> Any:
        log.append((store_id(pipeline), node.name))
        if node.sleep:
            time.sleep(node.sleep)
        return pure(node, kwargs)

    return run_sync


def build(dag: Dag, log: Log) -> tuple[Pipeline, dict[str, Step[Any]]]:
    """A fresh pipeline running ``dag``'s pure steps; each start is appended to ``log``."""
    pipeline = Pipeline()
    steps = {
        node.name: register(pipeline, node, pure_step(pipeline, node, log)) for node in dag.nodes
    }
    return pipeline, steps


def demand(pipeline: Pipeline, steps: dict[str, Step[Any]], target: Target) -> Any:
    """The library's coroutine for ``target`` (in the current store)."""
    kind, name = target
    return steps[name]() if kind == "step" else pipeline.resource(name)


def expect(reference: Reference, target: Target) -> Any:
    """The oracle's outcome for ``target``: a value, or the exception it raised."""
    kind, name = target
    try:
        return reference.call(name) if kind == "step" else reference.resource(name)
    except Exception as exc:
        return exc


def check_outcome(got: Any, expected: Any) -> None:
    """The library's outcome of one call equals the oracle's (errors compared by kind)."""
    if isinstance(expected, Missing):
        assert isinstance(got, MissingResourceError), got
        assert {name for name, _ in got.missing} == expected.names
    else:
        assert not isinstance(got, BaseException), got
        assert got == expected


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` in a fresh loop, bounded; fail on errors the loop reports as unhandled."""
    reports: list[dict[str, Any]] = []

    async def bounded() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context))
        try:
            # `asyncio.timeout`, not `wait_for`: no extra task, so `settle` sees only the library's.
            async with asyncio.timeout(BOUND):
                return await main()
        except TimeoutError:
            raise AssertionError(f"the example did not finish within {BOUND} s") from None

    result = asyncio.run(bounded())
    assert not reports, reports
    return result


async def settle(pipeline: Pipeline) -> None:
    """Assert the library left nothing behind: tasks, demands, subscriptions."""
    current = asyncio.current_task()
    leftover = [task for task in asyncio.all_tasks() if task is not current]
    # A task the library has cancelled finishes at its next turn; anything else is a leak.
    assert all(task.cancelling() for task in leftover), leftover
    if leftover:
        await asyncio.wait_for(asyncio.wait(leftover), 1)
    assert asyncio.all_tasks() == {current}
    store = pipeline._engine.store
    assert store.active == {}
    assert store.private == set()
    for name, subject in store.subjects.items():
        assert subject.observers == [], name


def starts(log: Log, store: int = 0) -> Counter[str]:
    """How often each step started in ``store``."""
    return Counter(name for where, name in log if where == store)


# -- properties --------------------------------------------------------------------------------
