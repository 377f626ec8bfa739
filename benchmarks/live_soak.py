"""Soak test of a live store: memory stays flat over many pushes (no history is kept).

    python benchmarks/live_soak.py                   # 1,000,000 pushes
    python benchmarks/live_soak.py --pushes 20000    # the reduced version the tests run

One live store of the README's seed pipeline (its steps, without the prints) with
``res_times_mod``, ``res_minus_mod`` and ``result`` observed; each push changes ``divisor``
(cycling through 1-7, so that every push reruns steps and some of them cut off) and then awaits
the settled ``res_times_mod``. Every 16th push also pushes an equal value (a no-op).

Memory is measured with tracemalloc (started before pipeliner_rx and reactivex are imported)
and as the process's resident set size, after the first 10% of the pushes and at the end. The
script exits with status 1 if either grew by 10% or more.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from soak import seed_pipeline as seed_steps

if TYPE_CHECKING:
    from pipeliner_rx import Pipeline

LIMIT = 10.0  # percent of growth that fails the soak


def seed_pipeline() -> Pipeline:
    """The README example's steps (soak's definition; the step that provides nothing does not
    run in a live store)."""
    return seed_steps()[0]


def rss_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def soak(pushes: int) -> dict[str, Any]:
    pipeline = seed_pipeline()
    marks: dict[str, tuple[int, int]] = {}
    start = time.perf_counter()
    async with pipeline.live(base=38, divisor=1) as live:
        received = [0]
        for name in ("res_times_mod", "res_minus_mod", "result"):
            live.observe(name).subscribe(lambda _: received.__setitem__(0, received[0] + 1))
        await live.get("res_times_mod")
        for i in range(pushes):
            divisor = i % 7 + 1
            live.push(divisor=divisor)
            if i % 16 == 0:
                live.push(divisor=divisor)  # equal: changes nothing
            await live.get("res_times_mod")
            if i + 1 == max(pushes // 10, 1):
                gc.collect()
                marks["early"] = (tracemalloc.get_traced_memory()[0], rss_kib())
        gc.collect()
        marks["end"] = (tracemalloc.get_traced_memory()[0], rss_kib())
        stats = live.stats
    elapsed = time.perf_counter() - start
    return {"marks": marks, "stats": stats, "seconds": elapsed, "received": received[0]}


def growth(before: int, after: int) -> float:
    return (after - before) / before * 100 if before else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=1_000_000)
    args = parser.parse_args()
    tracemalloc.start()
    result = asyncio.run(soak(args.pushes))
    (traced_early, rss_early), (traced_end, rss_end) = (
        result["marks"]["early"],
        result["marks"]["end"],
    )
    traced = growth(traced_early, traced_end)
    rss = growth(rss_early, rss_end)
    ok = traced < LIMIT and rss < LIMIT
    stats = result["stats"]
    print(
        f"soak: pushes={args.pushes} traced_10pct={traced_early / 1024:.0f}KiB "
        f"traced_end={traced_end / 1024:.0f}KiB traced_growth={traced:.2f}% "
        f"rss_10pct={rss_early}KiB rss_end={rss_end}KiB rss_growth={rss:.2f}% "
        f"runs={stats.step_runs} cutoffs={stats.cutoffs} emissions={result['received']} "
        f"us_per_push={result['seconds'] / max(args.pushes, 1) * 1e6:.1f} ok={ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
