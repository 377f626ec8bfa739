"""Benchmarks of pipeliner_rx against a hand-written asyncio engine (and Apache Hamilton).

    python benchmarks/run.py            # full run: W1-W4, registration, memory, scale, GC
    python benchmarks/run.py --quick    # fewer repetitions, smaller scale checks

Every workload runs for every engine in the same process, repetitions interleaved, and the
table gives medians and ratios to the hand-written engine (one Future per resource, one Task
per step, the called step included), and pipeliner_rx's ratio to the previous hand-written
baseline, which runs the called step inline in the caller's task. The floor engine
(`floor.py`) is pipeliner_rx's design with none of its features: what the design itself costs.
The cyclic GC section gives
the objects a scoped seed run leaves to the cyclic GC, and the p50/p99 latency of scoped seed
runs with the GC on and off. Results are also written as JSON (``--json``, default
benchmarks/results.json).
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
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines import (
    HandWrittenEngine,
    HandWrittenInlineTargetEngine,
    PipelinerEngine,
    available_engines,
)
from workloads import Workload, chain, fan, seed, sleeps

from pipeliner_rx import Pipeline

GC_P99_TARGET = 1.5  # p99 latency with the cyclic GC on, at most this times with it off


def measure(engine: Any, workload: Workload, runs: int) -> float:
    """Seconds per run of ``runs`` runs, in one event loop."""

    async def go() -> float:
        await engine.run()  # warm up (and let Hamilton build its driver)
        gc.collect()
        start = time.perf_counter()
        for _ in range(runs):
            await engine.run()
        return (time.perf_counter() - start) / runs

    return asyncio.run(go())


def figure(workload: Workload, seconds: float) -> float:
    if workload.unit == "runs/s":
        return 1 / seconds
    if workload.unit == "us/step":
        return seconds / workload.size * 1e6
    return seconds


def peak_memory(engine_type: type[Any], workload: Workload) -> int:
    engine = engine_type(workload)
    asyncio.run(engine.run())
    tracemalloc.start()
    asyncio.run(engine.run())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def bench_workloads(reps: int, quick: bool, only: str | None = None) -> list[dict[str, Any]]:
    specs: list[tuple[Workload, int]] = [
        (seed(), 300 if quick else 2000),
        (seed(with_resmod=True), 300 if quick else 2000),
        (chain(1_000), 3 if quick else 20),
        (chain(10_000), 1 if quick else 3),
        (fan(1_000), 3 if quick else 20),
        (fan(10_000), 1 if quick else 3),
        (sleeps(), 1 if quick else 3),
    ]
    rows = []
    for workload, runs in specs:
        if only and not workload.name.startswith(only):
            continue
        engines = [engine_type(workload) for engine_type in available_engines()]
        times: dict[str, list[float]] = {engine.name: [] for engine in engines}
        failures: dict[str, str] = {}
        for _ in range(reps):  # interleaved: drift hits every engine alike
            for engine in engines:
                if engine.name in failures:
                    continue
                try:
                    times[engine.name].append(measure(engine, workload, runs))
                except Exception as exc:  # a peer that cannot run this workload: say so
                    failures[engine.name] = f"fails: {type(exc).__name__}"
        for engine in engines:
            getattr(engine, "close", lambda: None)()
        del engines
        gc.collect()  # each workload starts on the same small heap
        medians = {name: statistics.median(values) for name, values in times.items() if values}
        base = medians[HandWrittenEngine.name]
        inline = medians[HandWrittenInlineTargetEngine.name]
        row: dict[str, Any] = {"workload": workload.name, "unit": workload.unit, "engines": {}}
        row["failures"] = failures
        for name, seconds in medians.items():
            row["engines"][name] = {
                "seconds_per_run": seconds,
                "figure": figure(workload, seconds),
                "ratio": seconds / base,
                "ratio_inline_target": seconds / inline,
            }
        if workload.unit == "s":
            ideal = 0.02
            row["ideal_ratio"] = medians[PipelinerEngine.name] / ideal
        rows.append(row)
        print(f"  measured {workload.name}", file=sys.stderr)
    return rows


def bench_registration(sizes: list[int]) -> list[dict[str, Any]]:
    """Seconds to register n chain steps (plain `async def` functions, made beforehand)."""
    rows = []
    for n in sizes:
        namespace: dict[str, Any] = {}
        source = "async def s0():\n    return 0\n" + "".join(
            f"async def s{i}(r{i - 1}):\n    return r{i - 1} + 1\n" for i in range(1, n)
        )
        exec(source, namespace)  # n ordinary functions, as a module would define them
        functions = [namespace[f"s{i}"] for i in range(n)]
        best = float("inf")
        for _ in range(3):
            pipeline = Pipeline()
            start = time.perf_counter()
            for i, fn in enumerate(functions):
                pipeline.step(provides=f"r{i}")(fn)
            best = min(best, time.perf_counter() - start)
        rows.append({"steps": n, "seconds": best})
    return rows


def bench_instrumentation(reps: int, runs: int) -> dict[str, float]:
    """W1 as shipped against W1 with the events and logging checks cut out of the step path."""
    import pipeliner_rx._activation as activation

    workload = seed()
    engine = PipelinerEngine(workload)
    shipped = activation.announce_start

    def started(step: Any, scope: int, attempt: int) -> float:
        return 0.0  # "nobody watched it start": the emission skips its checks too

    with_checks, without = [], []
    for _ in range(reps):
        with_checks.append(measure(engine, workload, runs))
        activation.announce_start = started
        try:
            without.append(measure(engine, workload, runs))
        finally:
            activation.announce_start = shipped
    a, b = statistics.median(with_checks), statistics.median(without)
    return {"with_checks": a, "without_checks": b, "overhead": a / b - 1}


def bench_scale(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for shape in (chain, fan):
        for n in sizes:
            workload = shape(n)
            engine = PipelinerEngine(workload)
            seconds = min(measure(engine, workload, 1) for _ in range(2))
            rows.append({"shape": shape.__name__, "steps": n, "us_per_step": seconds / n * 1e6})
    return rows


@contextmanager
def cyclic_gc(enabled: bool) -> Iterator[None]:
    """The cyclic GC on or off for the block, then as it was."""
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


def garbage_per_run(engine: Any, runs: int) -> float:
    """Objects a full collection finds unreachable after ``runs`` runs made with the GC off."""

    async def go() -> float:
        await engine.run()  # warm up: first-run caches are not garbage
        gc.collect()
        with cyclic_gc(False):
            for _ in range(runs):
                await engine.run()
            return gc.collect() / runs

    return asyncio.run(go())


def latencies_us(engine: Any, runs: int, gc_on: bool) -> dict[str, float]:
    """p50 and p99 in microseconds of ``runs`` runs made one at a time, the GC on or off."""

    async def go() -> list[float]:
        for _ in range(min(runs, 500)):  # warm up
            await engine.run()
        samples = [0.0] * runs  # filled in place: the timing allocates no tracked objects
        gc.collect()
        with cyclic_gc(gc_on):
            for i in range(runs):
                start = time.perf_counter()
                await engine.run()
                samples[i] = time.perf_counter() - start
        gc.collect()  # the GC-off runs' garbage, outside the timing
        return samples

    cuts = statistics.quantiles(asyncio.run(go()), n=100, method="inclusive")
    return {"p50_us": cuts[49] * 1e6, "p99_us": cuts[98] * 1e6}


def bench_gc(garbage_runs: int, latency_runs: int) -> dict[str, Any]:
    """Cyclic garbage per scoped seed run, and the p99 latency cost of the GC collecting it."""
    # A service keeps long-lived objects (caches, sessions, configuration) and each full
    # collection traverses them all, so runs that leave cycles cost more there than on this
    # script's small heap. 100,000 small lists stand in for them, for every engine alike.
    long_lived = [[i] for i in range(100_000)]
    rows = []
    for engine_type in (HandWrittenEngine, PipelinerEngine):
        engine = engine_type(seed())
        on = latencies_us(engine, latency_runs, gc_on=True)
        off = latencies_us(engine, latency_runs, gc_on=False)
        rows.append(
            {
                "engine": engine.name,
                "unreachable_per_run": garbage_per_run(engine, garbage_runs),
                "gc_on": on,
                "gc_off": off,
                "p99_ratio": on["p99_us"] / off["p99_us"],
            }
        )
    return {
        "runs": latency_runs,
        "long_lived_objects": len(long_lived),
        "thresholds": gc.get_threshold(),
        "p99_ratio_target": GC_P99_TARGET,
        "engines": rows,
    }


def gc_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| engine | GC-unreachable objects / run | p50 GC on | p99 GC on | p50 GC off "
        "| p99 GC off | p99 on / off |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["engines"]:
        on, off = r["gc_on"], r["gc_off"]
        lines.append(
            f"| {r['engine']} | {r['unreachable_per_run']:.1f} | {on['p50_us']:.0f} us "
            f"| {on['p99_us']:.0f} us | {off['p50_us']:.0f} us | {off['p99_us']:.0f} us "
            f"| {r['p99_ratio']:.2f}x |"
        )
    ours = next(r for r in result["engines"] if r["engine"] == PipelinerEngine.name)
    met = "met" if ours["p99_ratio"] <= GC_P99_TARGET else "NOT met"
    lines.append(
        f"\nTarget, {PipelinerEngine.name}'s p99 with the GC on within {GC_P99_TARGET}x of "
        f"GC off: {met} ({ours['p99_ratio']:.2f}x)."
    )
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["engines"]) + [
        n for row in rows for n in row["failures"] if n not in rows[0]["engines"]
    ]
    header = "| workload | " + " | ".join(names) + f" | {PipelinerEngine.name} vs inline target |"
    lines = [header, "|---|" + "---|" * (len(names) + 1)]
    for row in rows:
        cells = []
        for name in names:
            cell = row["engines"].get(name)
            if cell is None:
                cells.append(row["failures"].get(name, "-"))
                continue
            unit = row["unit"]
            value = cell["figure"]
            text = f"{value:,.0f} {unit}" if unit == "runs/s" else f"{value:.3g} {unit}"
            cells.append(f"{text} ({cell['ratio']:.2f}x)")
        ours = row["engines"].get(PipelinerEngine.name)
        cells.append(f"{ours['ratio_inline_target']:.2f}x" if ours else "-")
        lines.append(f"| {row['workload']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller scale")
    parser.add_argument("--reps", type=int, help="repetitions per engine (default 5; quick 3)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("--only", help="run only the workloads whose name starts with this")
    parser.add_argument(
        "--no-gc", action="store_true", help="measure the workloads with the cyclic GC off"
    )
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 5)

    gc_state = ", cyclic GC off for the workloads" if args.no_gc else ""
    python = f"Python {platform.python_version()} on {platform.machine()}"
    print(f"{python}, medians of {reps}{gc_state}")
    # Registration first, on the heap a program that registers its steps at import would have.
    registration = [] if args.only else bench_registration([1_000, 10_000])
    with cyclic_gc(not args.no_gc):
        rows = bench_workloads(reps, args.quick, args.only)
    print(
        "\n## Workloads (ratio to the hand-written engine, the called step in a task too; "
        "lower is better)\n"
    )
    print(markdown(rows))
    if args.only:
        return
    for row in rows:
        if "ideal_ratio" in row:
            print(f"\nW4 wall time / ideal (one 20 ms sleep): {row['ideal_ratio']:.2f}x")

    print("\n## Registering steps\n")
    for r in registration:
        print(f"- {r['steps']:,} steps: {r['seconds'] * 1000:.1f} ms")

    instrumentation = bench_instrumentation(reps, 300 if args.quick else 2000)
    print(
        f"\nEvents with no subscriber and logging at the default level cost "
        f"{instrumentation['overhead'] * 100:.1f}% on W1."
    )

    memory = []
    print("\n## Peak memory of one run (tracemalloc)\n")
    for workload in (seed(), chain(1_000), fan(1_000)):
        cells = {t.name: peak_memory(t, workload) for t in available_engines()}
        memory.append({"workload": workload.name, "bytes": cells})
        print(
            f"- {workload.name}: " + ", ".join(f"{n} {b / 1024:,.0f} KiB" for n, b in cells.items())
        )

    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    scale = bench_scale(sizes)
    print("\n## Scale (pipeliner_rx, us/step)\n")
    for r in scale:
        print(f"- {r['shape']} of {r['steps']:,}: {r['us_per_step']:.2f} us/step")

    collector = bench_gc(500 if args.quick else 2_000, 2_000 if args.quick else 20_000)
    print(
        f"\n## Cyclic GC ({collector['runs']:,} scoped seed runs each way, "
        f"{collector['long_lived_objects']:,} long-lived objects, "
        f"thresholds {collector['thresholds']})\n"
    )
    print(gc_markdown(collector))

    Path(args.json).write_text(
        json.dumps(
            {
                "workloads": rows,
                "registration": registration,
                "instrumentation": instrumentation,
                "memory": memory,
                "scale": scale,
                "gc": collector,
            },
            indent=2,
        )
    )
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
