"""Benchmarks of live stores (`Pipeline.live`): the five targets of the live-dataflow issue.

    python benchmarks/live.py            # full run
    python benchmarks/live.py --quick    # fewer pushes and repetitions (a smoke run)

Every figure is a ratio measured in one run, repetitions interleaved, medians:

1. proportional: a push that reruns 10 steps in a 10,000-step graph against the same push in
   a 100-step graph (chains of 10 steps, every chain's end observed);
2. against today's workaround: the same push in a 1,000-step graph against a fresh scope per
   change that computes every observed output;
3. against a hand-written asyncio version of the live seed pipeline (``divisor`` pushed,
   ``res_times_mod`` delivered; one task per step, the stale run cancelled by hand);
4. an equal push (a no-op) against a changing one, on the seed pipeline;
5. switch-latest: 20 pushes 10 ms apart into a 100 ms step deliver the last value about
   100 ms after the last push, the 19 stale runs cancelled.

It prints a markdown table (the README's) and writes JSON to benchmarks/results-live.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import soak

from pipeliner_rx import LiveStore, Pipeline

# -- graphs -------------------------------------------------------------------------------------


def chains(steps: int) -> Pipeline:
    """``steps // 10`` independent chains of 10 steps: ``in{k} -> r{k}_0 -> ... -> r{k}_9``."""
    pipeline = Pipeline()
    source = []
    for k in range(steps // 10):
        source.append(f"async def c{k}_0(in{k}):\n    return in{k} + 1\n")
        source += [
            f"async def c{k}_{j}(r{k}_{j - 1}):\n    return r{k}_{j - 1} + 1\n"
            for j in range(1, 10)
        ]
    namespace: dict[str, Any] = {}
    exec("".join(source), namespace)  # plain module-level-style functions
    for k in range(steps // 10):
        for j in range(10):
            pipeline.step(provides=f"r{k}_{j}")(namespace[f"c{k}_{j}"])
    return pipeline


def seed_pipeline() -> Pipeline:
    """The README example's steps (soak's definition; the step that provides nothing does not
    run in a live store)."""
    return soak.seed_pipeline()[0]


# -- measuring ----------------------------------------------------------------------------------


class Delivery:
    """The observed output: a future per push, resolved by the observer."""

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None

    def __call__(self, value: Any) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(value)

    def expect(self) -> asyncio.Future[Any]:
        self.future = asyncio.get_running_loop().create_future()
        return self.future


async def live_pushes(
    live: LiveStore, delivery: Delivery, name: str, values: Callable[[int], Any], count: int
) -> float:
    """Seconds per push of ``name=values(i)``, each until the observed output arrives."""
    gc.collect()
    start = time.perf_counter()
    for i in range(count):
        arrived = delivery.expect()
        live.push(**{name: values(i)})
        await arrived
    return (time.perf_counter() - start) / count


async def chain_live(steps: int) -> tuple[LiveStore, Delivery]:
    pipeline = chains(steps)
    live = pipeline.live(**{f"in{k}": 0 for k in range(steps // 10)})
    delivery = Delivery()
    live.observe("r0_9").subscribe(delivery)
    for k in range(1, steps // 10):
        live.observe(f"r{k}_9").subscribe()
    await live.get("r0_9")
    for k in range(steps // 10):
        await live.get(f"r{k}_9")
    return live, delivery


async def proportional(reps: int, pushes: int) -> dict[str, Any]:
    small, small_out = await chain_live(100)
    big, big_out = await chain_live(10_000)
    times: dict[str, list[float]] = {"100": [], "10,000": []}
    offset = [1]

    def values(i: int) -> int:
        offset[0] += 1
        return offset[0]

    for _ in range(reps):
        times["100"].append(await live_pushes(small, small_out, "in0", values, pushes))
        times["10,000"].append(await live_pushes(big, big_out, "in0", values, pushes))
    runs = (small.stats.step_runs, big.stats.step_runs)
    await small.aclose()
    await big.aclose()
    medians = {key: statistics.median(value) for key, value in times.items()}
    return {"seconds_per_push": medians, "ratio": medians["10,000"] / medians["100"], "runs": runs}


async def against_scopes(reps: int, pushes: int, scoped: int) -> dict[str, Any]:
    live, delivery = await chain_live(1_000)
    pipeline = chains(1_000)
    ends = [f"r{k}_9" for k in range(100)]
    inputs = {f"in{k}": 0 for k in range(100)}

    async def scope_per_change(count: int) -> float:
        gc.collect()
        start = time.perf_counter()
        for i in range(count):
            inputs["in0"] = i + 1
            async with pipeline.scope(**inputs) as scope:
                await asyncio.gather(*(scope.resource(end) for end in ends))
        return (time.perf_counter() - start) / count

    offset = [1]

    def values(i: int) -> int:
        offset[0] += 1
        return offset[0]

    live_times, scope_times = [], []
    for _ in range(reps):
        live_times.append(await live_pushes(live, delivery, "in0", values, pushes))
        scope_times.append(await scope_per_change(scoped))
    await live.aclose()
    a, b = statistics.median(live_times), statistics.median(scope_times)
    return {"live": a, "scope": b, "speedup": b / a}


class HandWrittenLive:
    """The live seed pipeline written by hand: on each push, one task per step reruns what
    ``divisor`` affects (``divide`` and ``mod`` concurrently, then ``get_resmod``), the run
    still going is cancelled (switch-latest), and the result is delivered."""

    def __init__(self, base: int, divisor: int, deliver: Callable[[Any], None]) -> None:
        self.base = base
        self.divisor = divisor
        self.deliver = deliver
        self.task: asyncio.Task[None] | None = None

    def push(self, divisor: int) -> None:
        if divisor == self.divisor:
            return
        self.divisor = divisor
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = asyncio.get_running_loop().create_task(self.recompute(divisor))

    async def recompute(self, divisor: int) -> None:
        loop = asyncio.get_running_loop()
        result = loop.create_task(self.divide(self.base, divisor))
        modulus = loop.create_task(self.mod(self.base, divisor))
        try:
            times, _ = await loop.create_task(self.get_resmod(await result, await modulus))
        except asyncio.CancelledError:
            result.cancel()
            modulus.cancel()
            raise
        self.deliver(times)

    @staticmethod
    async def divide(base: int, divisor: int) -> int:
        return base // divisor

    @staticmethod
    async def mod(base: int, divisor: int) -> int:
        return base % divisor

    @staticmethod
    async def get_resmod(result: int, modulus: int) -> tuple[int, int]:
        return result * modulus, result - modulus


def alternating(i: int) -> int:
    return (3, 5)[i % 2]  # res_times_mod: 24, 21, 24, ...: every push changes it


async def against_hand_written(reps: int, pushes: int) -> dict[str, Any]:
    live = seed_pipeline().live(base=38, divisor=4)
    delivery = Delivery()
    live.observe("res_times_mod").subscribe(delivery)
    await live.get("res_times_mod")
    hand_delivery = Delivery()
    hand = HandWrittenLive(38, 4, hand_delivery)

    async def hand_pushes(count: int) -> float:
        gc.collect()
        start = time.perf_counter()
        for i in range(count):
            arrived = hand_delivery.expect()
            hand.push(alternating(i))
            await arrived
        return (time.perf_counter() - start) / count

    live_times, hand_times = [], []
    for _ in range(reps):
        live_times.append(await live_pushes(live, delivery, "divisor", alternating, pushes))
        hand_times.append(await hand_pushes(pushes))
    await live.aclose()
    a, b = statistics.median(live_times), statistics.median(hand_times)
    return {"live": a, "hand_written": b, "ratio": a / b}


async def equal_pushes(reps: int, pushes: int) -> dict[str, Any]:
    live = seed_pipeline().live(base=38, divisor=3)
    delivery = Delivery()
    live.observe("res_times_mod").subscribe(delivery)
    await live.get("res_times_mod")

    async def equal(count: int) -> float:
        revision = live.revision
        await asyncio.sleep(0)
        gc.collect()
        start = time.perf_counter()
        for _ in range(count):
            live.push(divisor=alternating(0))  # the value it holds: changes nothing
        elapsed = time.perf_counter() - start
        assert live.revision == revision
        return elapsed / count

    changing, same = [], []
    for _ in range(reps):
        # Ends on 3 (an even count of alternating pushes starting at 5), the equal value.
        changing.append(
            await live_pushes(live, delivery, "divisor", lambda i: (5, 3)[i % 2], pushes)
        )
        same.append(await equal(pushes))
    await live.aclose()
    a, b = statistics.median(same), statistics.median(changing)
    return {"equal": a, "changing": b, "ratio": a / b}


async def switch_latest(reps: int) -> dict[str, Any]:
    pipeline = Pipeline()

    @pipeline.step(provides="slow")
    async def slow(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    latencies, cancelled = [], []
    for _ in range(reps):
        async with pipeline.live(x=0) as live:
            delivery = Delivery()
            live.observe("slow").subscribe(delivery)
            await live.get("slow")
            before = live.stats.cancelled_runs
            arrived = delivery.expect()
            last = 0.0
            for i in range(1, 21):
                live.push(x=i)
                last = time.perf_counter()
                if i < 20:
                    await asyncio.sleep(0.01)
            value = await arrived
            latencies.append(time.perf_counter() - last)
            assert value == 20
            cancelled.append(live.stats.cancelled_runs - before)
    return {"latency": statistics.median(latencies), "cancelled": statistics.median(cancelled)}


# -- report -------------------------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def table(results: dict[str, Any]) -> str:
    p, s, h, e, w = (results[key] for key in ("proportional", "scopes", "hand", "equal", "switch"))
    rows = [
        (
            "push rerunning 10 steps: 10,000-step graph / 100-step graph",
            f"{us(p['seconds_per_push']['10,000'])} / {us(p['seconds_per_push']['100'])} "
            f"= **{p['ratio']:.2f}x**",
            "<= 1.5x",
            p["ratio"] <= 1.5,
        ),
        (
            "fresh scope per change / live push, 1,000-step graph, 10 steps affected",
            f"{us(s['scope'])} / {us(s['live'])} = **{s['speedup']:.0f}x faster**",
            ">= 30x",
            s["speedup"] >= 30,
        ),
        (
            "live seed pipeline, push to output: pipeliner_rx / hand-written asyncio",
            f"{us(h['live'])} / {us(h['hand_written'])} = **{h['ratio']:.2f}x**",
            "<= 2.5x",
            h["ratio"] <= 2.5,
        ),
        (
            "equal push / changing push (seed pipeline)",
            f"{us(e['equal'])} / {us(e['changing'])} = **{e['ratio']:.3f}**",
            "< 0.1",
            e["ratio"] < 0.1,
        ),
        (
            "20 pushes 10 ms apart into a 100 ms step: last push to output; runs cancelled",
            f"**{w['latency'] * 1000:.0f} ms**; **{w['cancelled']:.0f}** cancelled",
            "about 100 ms; 19",
            0.1 <= w["latency"] <= 0.13 and w["cancelled"] == 19,
        ),
    ]
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'yes' if d else 'no'} |" for a, b, c, d in rows]
    return "\n".join(lines)


async def run(quick: bool) -> dict[str, Any]:
    reps = 3 if quick else 7
    pushes = 50 if quick else 500
    steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
        ("proportional", lambda: proportional(reps, pushes)),
        ("scopes", lambda: against_scopes(reps, pushes, 3 if quick else 20)),
        ("hand", lambda: against_hand_written(reps, pushes * 4)),
        ("equal", lambda: equal_pushes(reps, pushes * 4)),
        ("switch", lambda: switch_latest(1 if quick else 3)),
    ]
    results = {}
    for key, measure in steps:
        results[key] = await measure()
        gc.collect()
        print(f"  measured {key}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pushes and repetitions")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results-live.json"))
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}")
    results = asyncio.run(run(args.quick))
    print()
    print(table(results))
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
