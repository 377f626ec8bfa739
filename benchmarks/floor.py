"""The floor of pipeliner_rx's design: what its data path costs with none of its features.

`FloorEngine` runs a workload the way the engine does at its core, and nothing more: a plan
compiled once per target and set of present resources, one `Resource` (the engine's own lean
``AsyncSubject``) per resource, each step observing its input subjects and counting them down,
one task per step (the called step included), and the caller observing the target's subject.

It has no scopes (a dict per run), no reference-counted demand (nothing is cancelled when a
caller goes away), no sharing with steps active for another demand, no failure propagation, no
events, logging or retries, no context per demand, no defaults. The distance between it and
pipeliner_rx is what those features cost; the distance between it and the hand-written engine
is what the design itself (subjects and observers instead of futures) costs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import abc
from workloads import StepSpec, Workload

from pipeliner_rx._store import Resource


class _Node(abc.ObserverBase[Any]):
    """One step of one run: counts its inputs down, then runs in a task of its own."""

    __slots__ = ("loop", "outputs", "remaining", "sources", "spec")

    def __init__(
        self,
        spec: StepSpec,
        sources: list[Resource],
        outputs: list[Resource],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.spec = spec
        self.sources = sources
        self.outputs = outputs
        self.loop = loop
        waiting = [s for s in sources if not (s.is_stopped and s.has_value)]
        self.remaining = len(waiting)
        if not waiting:
            self._ready()
        for subject in waiting:
            subject.listen(self)

    def on_next(self, value: Any) -> None:
        pass  # read from the subject once all are there

    def on_error(self, error: Exception) -> None:
        raise error  # no failure propagation: the workloads do not fail

    def on_completed(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self._ready()

    def _ready(self) -> None:
        kwargs = {}
        for name, subject in zip(self.spec.needs, self.sources, strict=True):
            kwargs[name] = subject.value
        self.loop.create_task(self._run(kwargs))

    async def _run(self, kwargs: dict[str, Any]) -> None:
        value = await self.spec.fn(**kwargs)
        outputs = self.outputs
        if len(outputs) == 1:
            outputs[0].complete(value)
        else:
            for subject, item in zip(outputs, value, strict=True):
                subject.complete(item)


class _Waiter(abc.ObserverBase[Any]):
    """The caller's side: a future completed from the target's subject."""

    __slots__ = ("future", "source")

    def __init__(self, future: asyncio.Future[Any], source: Resource) -> None:
        self.future = future
        self.source = source
        source.listen(self)

    def on_next(self, value: Any) -> None:
        pass

    def on_error(self, error: Exception) -> None:
        self.future.set_exception(error)

    def on_completed(self) -> None:
        self.future.set_result(self.source.value)


class FloorEngine:
    """Compiled plan + one subject per resource + one task per step, and no features."""

    name = "floor: the design, no features"

    def __init__(self, workload: Workload) -> None:
        self.steps = {spec.name: spec for spec in workload.steps}
        self.providers = {name: spec for spec in workload.steps for name in spec.provides}
        self.targets = [workload.target, *workload.extra_targets]
        self.inputs = workload.inputs
        self.plans: dict[tuple[str, frozenset[str]], list[StepSpec]] = {}

    def _plan(self, target: str, present: frozenset[str]) -> list[StepSpec]:
        """The steps to run for ``target``, providers first (an iterative walk, cached)."""
        plan = self.plans.get((target, present))
        if plan is not None:
            return plan
        plan = []
        seen = set(present)
        stack: list[tuple[StepSpec, bool]] = [(self.steps[target], False)]
        while stack:
            spec, expanded = stack.pop()
            if expanded:
                plan.append(spec)
                continue
            stack.append((spec, True))
            for name in spec.needs:
                if name not in seen:
                    provider = self.providers[name]
                    seen.update(provider.provides)
                    stack.append((provider, False))
        self.plans[(target, present)] = plan
        return plan

    async def run(self) -> Any:
        loop = asyncio.get_running_loop()
        store: dict[str, Resource] = {}
        for name, value in self.inputs.items():
            subject = store[name] = Resource()
            subject.value = value
            subject.has_value = subject.is_stopped = True
        result = None
        for i, target in enumerate(self.targets):
            spec = self.steps[target]
            if spec.provides and spec.provides[0] in store:
                continue  # computed already, as a provider of an earlier target
            called = Resource()  # the called step's result, as its caller sees it
            for step in self._plan(target, frozenset(store)):
                outputs = [_subject(store, name) for name in step.provides]
                if step is spec:
                    outputs = outputs or [called]
                    called = outputs[0]
                sources = [_subject(store, name) for name in step.needs]
                _Node(step, sources, outputs, loop)
            if called.is_stopped:
                value = called.value
            else:
                future = loop.create_future()
                _Waiter(future, called)
                value = await future
            if i == 0:
                result = value
        return result


def _subject(store: dict[str, Resource], name: str) -> Resource:
    subject = store.get(name)
    if subject is None:
        subject = store[name] = Resource()
    return subject
