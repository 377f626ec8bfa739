"""The engines under test: pipeliner_rx, a hand-written asyncio engine, Apache Hamilton."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

from workloads import StepSpec, Workload

from pipeliner_rx import Pipeline


class PipelinerEngine:
    """pipeliner_rx: each run in a fresh scope, as a per-request user would."""

    name = "pipeliner_rx"

    def __init__(self, workload: Workload) -> None:
        self.pipeline = Pipeline()
        steps = {spec.name: register(self.pipeline, spec) for spec in workload.steps}
        self.target = steps[workload.target]
        self.extra = [steps[name] for name in workload.extra_targets]
        self.inputs = workload.inputs

    async def run(self) -> Any:
        async with self.pipeline.scope(**self.inputs):
            result = await self.target()
            for extra in self.extra:
                await extra()
        return result


class PipelinerEagerStartEngine(PipelinerEngine):
    """pipeliner_rx with its steps' tasks started eagerly (Python 3.12+ ``eager_start``).

    The same as setting ``PIPELINER_EAGER_START=1`` before importing the library.
    """

    name = "pipeliner_rx, eager start"

    async def run(self) -> Any:
        from pipeliner_rx import _starts

        shipped, _starts.EAGER_START = _starts.EAGER_START, True
        try:
            return await super().run()
        finally:
            _starts.EAGER_START = shipped


def register(pipeline: Pipeline, spec: StepSpec) -> Any:
    """Register a spec's coroutine under its own name and keyword-only parameters.

    The function is generated from source, as a user's own ``async def`` would be written: no
    closure, no ``__signature__`` object per step (those made the registry of a 10,000-step
    workload twice as large as a user's, and every full GC collection scans it).
    """
    params = ", ".join(spec.needs)
    source = f"async def {spec.name}({'*, ' if params else ''}{params}):\n    pass\n"
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    step = pipeline.step(provides=spec.provides or None)(namespace[spec.name])
    step.fn = spec.fn  # call the spec's coroutine directly: the generated one is its signature
    return step


class HandWrittenEngine:
    """The baseline: one Future per resource, one Task per needed step, written by hand.

    Same semantics for these workloads: supplied values suppress their providers, only the
    target's upstream runs, each step at most once, independent steps concurrently; the called
    step runs in a task of its own that the caller awaits, like every other step.
    """

    name = "hand-written asyncio"
    inline_target = False  # True: the called step runs in the caller's task, not its own

    def __init__(self, workload: Workload) -> None:
        self.steps = {spec.name: spec for spec in workload.steps}
        self.providers = {name: spec for spec in workload.steps for name in spec.provides}
        self.targets = [workload.target, *workload.extra_targets]
        self.inputs = workload.inputs

    async def run(self) -> Any:
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[Any]] = {}
        for name, value in self.inputs.items():
            future = futures[name] = loop.create_future()
            future.set_result(value)
        runs: dict[str, asyncio.Future[Any]] = {}  # step name -> its result, once started
        result = None
        for i, target in enumerate(self.targets):
            value = await self._demand(loop, futures, runs, self.steps[target])
            if i == 0:
                result = value
        return result

    async def _demand(
        self,
        loop: asyncio.AbstractEventLoop,
        futures: dict[str, asyncio.Future[Any]],
        runs: dict[str, asyncio.Future[Any]],
        target: StepSpec,
    ) -> Any:
        if target.name in runs:  # already started, as a provider of an earlier target
            return await runs[target.name]
        if not self.inline_target:
            self._start(loop, futures, runs, [target])
            return await runs[target.name]
        done = runs[target.name] = loop.create_future()
        for output in target.provides:
            futures[output] = loop.create_future()
        upstream = [self.providers[name] for name in target.needs if name not in futures]
        self._start(loop, futures, runs, upstream)
        value = await self._call(target, futures)
        done.set_result(value)
        return value

    def _start(
        self,
        loop: asyncio.AbstractEventLoop,
        futures: dict[str, asyncio.Future[Any]],
        runs: dict[str, asyncio.Future[Any]],
        work: list[StepSpec],
    ) -> None:
        """Start a task for each step in ``work`` and for each missing provider upstream."""
        # Iterative walk: a recursive one would overflow on the 10,000-step chain.
        while work:
            spec = work.pop()
            if spec.name in runs:
                continue
            for output in spec.provides:
                futures[output] = loop.create_future()
            runs[spec.name] = loop.create_task(self._call(spec, futures))
            work.extend(self.providers[name] for name in spec.needs if name not in futures)

    async def _call(self, spec: StepSpec, futures: dict[str, asyncio.Future[Any]]) -> Any:
        kwargs = {name: await futures[name] for name in spec.needs}
        value = await spec.fn(**kwargs)
        if spec.provides:  # a called step may provide nothing and return anything
            values = (value,) if len(spec.provides) == 1 else value
            for name, v in zip(spec.provides, values, strict=True):
                futures[name].set_result(v)
        return value


class HandWrittenInlineTargetEngine(HandWrittenEngine):
    """The previous baseline: as above, but the called step runs inline in the caller's task.

    No engine that runs every step in a task of its own can match this one call's saving;
    kept to show what it is worth.
    """

    name = "hand-written, inline target"
    inline_target = True


class HamiltonEngine:
    """Apache Hamilton's async driver (optional: `pip install -e ".[bench]"`)."""

    name = "Hamilton async driver"

    def __init__(self, workload: Workload) -> None:
        from hamilton import async_driver

        self.module = types.ModuleType(f"hamilton_{abs(hash(workload.name))}")
        sys.modules[self.module.__name__] = self.module  # Hamilton looks functions up there
        for spec in workload.steps:
            outputs = spec.provides or (spec.name,)
            for index, output in enumerate(outputs):
                node = _hamilton_node(spec, output, index, len(outputs))
                node.__module__ = self.module.__name__  # Hamilton takes a module's own functions
                self.module.__dict__[output] = node
        self.builder = async_driver.Builder().with_modules(self.module)
        self.driver: Any = None
        self.outputs = [self._output(workload, workload.target)]
        self.outputs += [self._output(workload, t) for t in workload.extra_targets]
        self.outputs = [o for group in self.outputs for o in group]
        # Supplied values of resources that a function computes are overrides in Hamilton.
        nodes = set(self.module.__dict__)
        self.inputs = {k: v for k, v in workload.inputs.items() if k not in nodes}
        self.overrides = {k: v for k, v in workload.inputs.items() if k in nodes}

    @staticmethod
    def _output(workload: Workload, target: str) -> list[str]:
        spec = next(s for s in workload.steps if s.name == target)
        return list(spec.provides or (spec.name,))

    def close(self) -> None:
        """Forget the generated module, so that later measurements run on a small heap."""
        sys.modules.pop(self.module.__name__, None)

    async def run(self) -> Any:
        if self.driver is None:
            self.driver = await self.builder.build()
        return await self.driver.execute(self.outputs, inputs=self.inputs, overrides=self.overrides)


def _hamilton_node(spec: StepSpec, output: str, index: int, count: int) -> Any:
    """A function named after one output, as Hamilton models a graph."""
    params = ", ".join(spec.needs)
    args = ", ".join(f"{n}={n}" for n in spec.needs)
    pick = f"[{index}]" if count > 1 else ""
    source = f"async def {output}({params}):\n    return (await _fn({args})){pick}\n"
    namespace: dict[str, Any] = {"_fn": spec.fn}
    exec(source, namespace)
    node = namespace[output]
    node.__annotations__ = {n: Any for n in spec.needs} | {"return": Any}
    return node


def available_engines() -> list[type[Any]]:
    """The engines this machine can run (Hamilton only with its extra installed)."""
    from floor import FloorEngine

    engines: list[type[Any]] = [
        HandWrittenEngine,
        HandWrittenInlineTargetEngine,
        FloorEngine,
        PipelinerEngine,
    ]
    if sys.version_info >= (3, 12):
        engines.append(PipelinerEagerStartEngine)
    try:
        import hamilton.async_driver  # noqa: F401
    except ImportError:
        pass
    else:
        engines.append(HamiltonEngine)
    return engines
