"""Soak test: memory stays flat over many scoped runs and many pushes in one process.

    python benchmarks/soak.py                  # 100,000 scoped runs, then 10,000 pushes
    python benchmarks/soak.py --runs 10000     # the reduced version the tests run

Phase 1 runs the README's seed pipeline (its steps, without the prints) in a fresh scope per
run, all in one event loop. Phase 2 keeps one pipeline alive and feeds it pushes, one scope
per push: alternately through `Scope.feed` from a long-lived Subject and through
`Scope.add_environment_resources`, each followed by a computation and an `observe`.

Memory is measured with tracemalloc (the Python heap: tracing starts before pipeliner_rx and
reactivex are imported, so the figures cover everything they allocate) and as the process's
resident set size (VmRSS), after the first 10% of a phase and at its end; the growth per run
is printed too. Each iteration yields to the event loop once, as a real program's loop gets
to run between requests. The script exits with status 1 if either measure of either phase
grew by 10% or more.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeliner_rx import Pipeline, Step

LIMIT = 10.0  # percent of growth that fails the soak


def seed_pipeline() -> tuple[Pipeline, Step[tuple[int, int, int]], Step[tuple[int, int]]]:
    """The README example's steps on a fresh pipeline: ``get_division`` and ``get_resmod``."""
    from pipeliner_rx import Pipeline  # imported once tracemalloc runs: see `main`

    pipeline = Pipeline()

    @pipeline.step(provides="base")
    async def base_provider() -> int:
        return 23

    @pipeline.step(provides="result")
    async def divide(base: int, divisor: int) -> int:
        return base // divisor

    @pipeline.step(provides="modulus")
    async def mod(base: int, divisor: int) -> int:
        return base % divisor

    @pipeline.step(provides=("res_times_mod", "res_minus_mod"))
    async def get_resmod(result: int, modulus: int) -> tuple[int, int]:
        return result * modulus, result - modulus

    @pipeline.step()
    async def get_division(base: int, result: int, modulus: int) -> tuple[int, int, int]:
        return base, result, modulus

    return pipeline, get_division, get_resmod


def rss_kib() -> int:
    """The process's resident set size in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Phase:
    """One phase's figures: memory after its first 10% and at its end, and its time."""

    name: str
    count: int
    seconds: float = 0.0
    traced_early: int = 0
    traced_end: int = 0
    rss_early: int = 0
    rss_end: int = 0

    @staticmethod
    def growth(early: int, end: int) -> float:
        """Growth from ``early`` to ``end`` in percent."""
        return 100.0 * (end - early) / early if early else 0.0

    @property
    def traced_growth(self) -> float:
        """Growth of traced Python memory, in percent."""
        return self.growth(self.traced_early, self.traced_end)

    @property
    def rss_growth(self) -> float:
        """Growth of the resident set size, in percent."""
        return self.growth(self.rss_early, self.rss_end)

    @property
    def bytes_each(self) -> float:
        """Traced bytes gained per iteration after the first 10%."""
        return (self.traced_end - self.traced_early) / (self.count - self.count // 10)

    @property
    def ok(self) -> bool:
        """Whether both measures grew by less than `LIMIT` percent."""
        return self.traced_growth < LIMIT and self.rss_growth < LIMIT


def snapshot() -> tuple[int, int]:
    """Traced bytes alive and RSS in KiB, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0], rss_kib()


async def soak(phase: Phase, one: Callable[[int], Awaitable[None]]) -> None:
    """Run ``one(i)`` ``phase.count`` times, measuring after the first 10% and at the end."""
    early = max(1, phase.count // 10)
    start = time.perf_counter()
    for i in range(phase.count):
        await one(i)
        # Calls whose steps finish without waiting never suspend; give the loop its turn.
        await asyncio.sleep(0)
        if i + 1 == early:
            phase.traced_early, phase.rss_early = snapshot()
    phase.seconds = time.perf_counter() - start
    phase.traced_end, phase.rss_end = snapshot()


async def scoped_runs(count: int) -> Phase:
    """Phase 1: the seed example's calls, each run in its own scope."""
    pipeline, get_division, get_resmod = seed_pipeline()
    pipeline.add_environment_resources(base=38)

    async def one(i: int) -> None:
        divisor = i % 97 + 1
        async with pipeline.scope():
            base, result, modulus = await get_division(divisor=divisor)
            assert await pipeline.resource("divisor") == divisor
            times, minus = await get_resmod()
        assert (base, result, modulus) == (38, 38 // divisor, 38 % divisor)
        assert (times, minus) == (result * modulus, result - modulus)

    phase = Phase("scoped runs", count)
    await soak(phase, one)
    return phase


async def pushes(count: int) -> Phase:
    """Phase 2: one long-lived pipeline; a scope per push, fed or pushed, then computed."""
    from reactivex.subject import Subject

    pipeline, get_division, _ = seed_pipeline()
    pipeline.add_environment_resources(base=38)
    readings: Subject[int] = Subject()  # a long-lived source, as a sensor stream would be

    async def one(i: int) -> None:
        divisor = i % 89 + 1
        async with pipeline.scope() as scope:
            if i % 2:
                scope.add_environment_resources(divisor=divisor)
            else:
                scope.feed("divisor", readings)
                readings.on_next(divisor)  # the first item becomes the resource
            _, result, _ = await get_division()
            assert result == await scope.observe("result") == 38 // divisor
        assert not readings.observers, "a scope's feed stayed subscribed"

    phase = Phase("pushes", count)
    await soak(phase, one)
    assert pipeline._engine.store.subjects.keys() <= {"base"}, (
        pipeline._engine.store.subjects.keys()
    )
    return phase


def report(phases: list[Phase]) -> None:
    """Print the summary table and one machine-readable line per phase."""
    print(
        f"{'phase':<12} {'count':>8} {'seconds':>8} {'us/each':>8} | "
        f"{'traced@10%':>11} {'traced@end':>11} {'growth':>7} {'B/each':>7} | "
        f"{'RSS@10%':>10} {'RSS@end':>10} {'growth':>7}"
    )
    for p in phases:
        print(
            f"{p.name:<12} {p.count:>8,} {p.seconds:>8.1f} {1e6 * p.seconds / p.count:>8.0f} | "
            f"{p.traced_early / 1024:>7,.0f} KiB {p.traced_end / 1024:>7,.0f} KiB "
            f"{p.traced_growth:>+6.2f}% {p.bytes_each:>7.2f} | "
            f"{p.rss_early:>6,} KiB {p.rss_end:>6,} KiB {p.rss_growth:>+6.2f}%"
        )
    for p in phases:
        print(
            f"soak: phase={p.name.replace(' ', '_')} count={p.count} seconds={p.seconds:.2f} "
            f"traced_growth={p.traced_growth:.2f}% rss_growth={p.rss_growth:.2f}% "
            f"bytes_each={p.bytes_each:.2f} ok={p.ok}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run both phases, print the figures; 0 if memory stayed flat, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="scoped runs (phase 1)")
    parser.add_argument("--pushes", type=int, default=10_000, help="pushes (phase 2)")
    args = parser.parse_args(argv)
    if args.runs < 10 or args.pushes < 10:
        parser.error("--runs and --pushes must be at least 10")
    tracemalloc.start()  # before the library is first imported (in `seed_pipeline`)
    start = time.perf_counter()
    phases = [asyncio.run(scoped_runs(args.runs)), asyncio.run(pushes(args.pushes))]
    tracemalloc.stop()
    report(phases)
    print(f"soak: total {time.perf_counter() - start:.1f} s, limit {LIMIT:.0f}% growth")
    return 0 if all(p.ok for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
