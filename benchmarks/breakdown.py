"""Where a W1 run's time goes: the engine's phases, timed from outside, against the baselines.

    python benchmarks/breakdown.py [--runs N]

Wraps the engine's phase functions with timers (exclusive time: a phase nested in another,
such as a step started inside the demand that readied it, counts for itself only), runs the
seed pipeline in a fresh scope per run, and prints microseconds per run for each phase, next to
the whole run of the rule-following hand-written engine and of the floor engine (`floor.py`).
The timers cost a little (the whole run is printed with and without them); read the phases as
proportions. The cyclic GC is off during the measurement, so that a collection is not charged
to whichever phase happened to allocate.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from engines import HandWrittenEngine, PipelinerEngine
from floor import FloorEngine
from workloads import seed

import pipeliner_rx._activation as activation_module
import pipeliner_rx._engine as engine_module

_clock = time.perf_counter


class Phases:
    """Exclusive time per phase: a nested phase's time is taken out of its parent's."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        # Per open phase: [name, start, time spent in nested phases]. Plain calls, no context
        # manager: the timers must cost little next to what they time.
        self.stack: list[list[Any]] = []

    def enter(self, name: str) -> None:
        self.stack.append([name, _clock(), 0.0])

    def leave(self) -> None:
        end = _clock()
        name, start, nested = self.stack.pop()
        elapsed = end - start
        self.totals[name] = self.totals.get(name, 0.0) + elapsed - nested
        if self.stack:
            self.stack[-1][2] += elapsed

    def wrap(self, owner: Any, attribute: str, name: str) -> Callable[[], None]:
        """Time ``owner.attribute`` (a function or method) as ``name``; return the undo."""
        original = getattr(owner, attribute)
        enter, leave = self.enter, self.leave

        def timed(*args: Any, **kwargs: Any) -> Any:
            enter(name)
            try:
                return original(*args, **kwargs)
            finally:
                leave()

        setattr(owner, attribute, timed)
        return lambda: setattr(owner, attribute, original)


def whole_run(engine: Any, runs: int) -> float:
    """Microseconds per run of ``engine``, after a warm-up."""

    async def go(count: int) -> None:
        for _ in range(count):
            await engine.run()

    asyncio.run(go(min(runs, 1000)))
    start = _clock()
    asyncio.run(go(runs))
    return (_clock() - start) / runs * 1e6


def measure(runs: int) -> tuple[dict[str, float], float, float, float, float]:
    """Per-run microseconds: by phase, the run timed and untimed, the baseline's, the floor's."""
    workload = seed()
    engine = PipelinerEngine(workload)
    pipeline, target, inputs = engine.pipeline, engine.target, workload.inputs
    phases = Phases()
    undo = [
        phases.wrap(engine_module, "activate", "demand (plan, activations, subscriptions)"),
        phases.wrap(activation_module.Activation, "_ready", "step start (kwargs, context, task)"),
        phases.wrap(activation_module.Activation, "_emit", "emission (outputs, dependents)"),
    ]

    async def go(count: int) -> None:
        enter, leave = phases.enter, phases.leave
        for _ in range(count):
            enter("scope: construction")
            scope = pipeline.scope(**inputs)
            leave()
            enter("scope: enter")
            await scope.__aenter__()
            leave()
            enter("call: the rest (caller's wait, steps' tasks, event loop)")
            await target()
            leave()
            enter("scope: exit")
            await scope.__aexit__(None, None, None)
            leave()

    gc.disable()
    try:
        asyncio.run(go(min(runs, 1000)))
        phases.totals.clear()
        start = _clock()
        asyncio.run(go(runs))
        wrapped = (_clock() - start) / runs * 1e6
        for restore in undo:
            restore()
        plain = whole_run(engine, runs)
        hand_us = whole_run(HandWrittenEngine(workload), runs)
        floor_us = whole_run(FloorEngine(workload), runs)
    finally:
        gc.enable()
    per_run = {name: seconds / runs * 1e6 for name, seconds in phases.totals.items()}
    return per_run, wrapped, plain, hand_us, floor_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    per_run, wrapped, plain, hand, floor = measure(args.runs)
    print(f"W1, {args.runs:,} runs, cyclic GC off; microseconds per run (exclusive)\n")
    print("| phase | us/run |")
    print("|---|---|")
    for name, us in sorted(per_run.items(), key=lambda item: -item[1]):
        print(f"| {name} | {us:.1f} |")
    print(f"| **pipeliner_rx, whole run with the timers** | {wrapped:.1f} |")
    print(f"| pipeliner_rx, whole run without them | {plain:.1f} |")
    print(f"| hand-written asyncio (rule-following), whole run | {hand:.1f} |")
    print(f"| floor engine (`floor.py`: the design, no features), whole run | {floor:.1f} |")
    ratios = f"pipeliner_rx {plain / hand:.2f}x (no timers), floor {floor / hand:.2f}x"
    print(f"\nratios to the hand-written engine: {ratios}")


if __name__ == "__main__":
    main()
