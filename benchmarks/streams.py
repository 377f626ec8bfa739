"""Streams and services: compute, map and per-request scopes, each against a baseline.

    python benchmarks/streams.py            # under a minute
    python benchmarks/streams.py --quick    # a few seconds: a smoke run (CI runs it)

Cases, each measured against its baseline in the same run (medians; ratio = measured cost /
baseline cost, lower is better; for throughput the cost is the time per request):

- `compute` over items of which 5% are slow: ``ordered=False`` against ``ordered=True``.
- A stream with failing items: ``return_exceptions=True`` against the ``concat_map`` + ``catch``
  pattern that was the advice before.
- Peak memory (tracemalloc) reading an endless source through `Pipeline.map` against pushing the
  same number of items through `compute` (an Rx source cannot be slowed: they queue).
- A web-like workload: per request, 3 async I/O steps and 1 CPU step on the default thread
  pool, 50 requests at a time, in a scope per request against the same handler written by hand
  with ``asyncio.gather``: throughput and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import itertools
import platform
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import reactivex
from reactivex import operators as ops

from pipeliner_rx import Pipeline


@dataclass
class Row:
    case: str
    baseline: str
    measured: str
    base_value: float
    value: float
    unit: str
    note: str = ""

    def ratio(self) -> float:
        """Measured cost over baseline cost: time, memory, latency, or time per request."""
        if self.unit == "req/s":
            return self.base_value / self.value
        return self.value / self.base_value

    def cells(self) -> list[str]:
        return [
            self.case,
            f"{self.baseline}: {fmt(self.base_value, self.unit)}",
            f"{self.measured}: {fmt(self.value, self.unit)}",
            f"{self.ratio():.3g}x",
        ]


def fmt(value: float, unit: str) -> str:
    if unit == "KiB":
        return f"{value:,.0f} KiB"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.3g} s"


def median_of(reps: int, measure: Callable[[], float]) -> float:
    values = []
    for _ in range(reps):
        gc.collect()
        values.append(measure())
    return statistics.median(values)


async def drain(observable: reactivex.Observable[Any]) -> list[Any]:
    """Subscribe and collect every item until completion."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    items: list[Any] = []
    observable.subscribe(
        items.append,
        lambda error: done.set_exception(error) if not done.done() else None,
        lambda: done.set_result(None) if not done.done() else None,
    )
    await done
    return items


def timed(main: Callable[[], Awaitable[Any]]) -> float:
    async def go() -> float:
        start = time.perf_counter()
        await main()
        return time.perf_counter() - start

    return asyncio.run(go())


# -- compute: ordered against unordered, with a few slow items ----------------------------------


def bench_unordered(reps: int, quick: bool) -> Row:
    n = 100 if quick else 400
    pipeline = Pipeline()

    @pipeline.step(provides="out")
    async def work(i: int) -> int:
        await asyncio.sleep(0.1 if i % 20 == 7 else 0.002)  # every 20th item is slow
        return i

    def run(ordered: bool) -> float:
        stream = reactivex.from_iterable([{"i": i} for i in range(n)]).pipe(
            pipeline.compute("out", max_concurrency=16, ordered=ordered)
        )
        return timed(lambda: drain(stream))

    ordered = median_of(reps, lambda: run(True))
    unordered = median_of(reps, lambda: run(False))
    return Row(
        f"`compute`, {n} items, 5% slow (100 ms, else 2 ms), 16 in flight",
        "ordered",
        "`ordered=False`",
        ordered,
        unordered,
        "s",
    )


# -- failing items: return_exceptions against concat_map + catch --------------------------------


def bench_bad_items(reps: int, quick: bool) -> Row:
    n = 25 if quick else 100
    pipeline = Pipeline()

    @pipeline.step(provides="out")
    async def work(i: int) -> int:
        await asyncio.sleep(0.02)
        if i % 10 == 3:
            raise ValueError(f"bad item {i}")
        return i

    items = [{"i": i} for i in range(n)]

    def old_pattern() -> float:
        operator = pipeline.compute("out")
        stream = reactivex.from_iterable(items).pipe(
            ops.concat_map(
                lambda item: reactivex.just(item).pipe(
                    operator, ops.catch(lambda error, _: reactivex.just(None))
                )
            )
        )
        return timed(lambda: drain(stream))

    def kept() -> float:
        stream = reactivex.from_iterable(items).pipe(
            pipeline.compute("out", return_exceptions=True)
        )
        return timed(lambda: drain(stream))

    base = median_of(reps, old_pattern)
    value = median_of(reps, kept)
    return Row(
        f"{n} items of 20 ms, 10% failing, the stream goes on",
        "`concat_map` + `catch`",
        "`return_exceptions=True`",
        base,
        value,
        "s",
    )


# -- memory: map over an endless source against compute over the same items ---------------------


def peak_kib(main: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        asyncio.run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1024


def bench_memory(quick: bool) -> tuple[Row, Row]:
    sizes = (500, 2_000) if quick else (2_000, 8_000)
    pipeline = Pipeline()

    @pipeline.step(provides="out")
    async def work(i: int, payload: bytes) -> int:
        await asyncio.sleep(0)
        return i + len(payload)

    def endless() -> Iterator[dict[str, Any]]:
        for i in itertools.count():
            yield {"i": i, "payload": bytes(100)}

    def with_map(n: int) -> float:
        async def main() -> None:
            results = pipeline.map(endless(), "out", max_concurrency=10)
            count = 0
            async for _ in results:
                count += 1
                if count == n:
                    break
            await results.aclose()

        return peak_kib(main)

    def with_compute(n: int) -> float:
        async def main() -> None:
            items = itertools.islice(endless(), n)
            await drain(
                reactivex.from_iterable(items).pipe(pipeline.compute("out", max_concurrency=10))
            )

        return peak_kib(main)

    small, large = sizes
    rows = []
    for n in (small, large):
        rows.append(
            Row(
                f"peak memory, {n:,} items of ~100 bytes, 10 in flight",
                "`compute` (items queue)",
                "`map` (endless source)",
                with_compute(n),
                with_map(n),
                "KiB",
            )
        )
    return rows[0], rows[1]


# -- a web-like workload: scope per request against asyncio.gather by hand -----------------------

IO = 0.001  # seconds per I/O call


def cpu(orders: list[int], prices: list[float]) -> int:
    digest = repr((orders, prices)).encode()
    for _ in range(100):
        digest = hashlib.sha256(digest).digest()
    return digest[0]


def web_pipeline() -> tuple[Pipeline, Callable[[int], Awaitable[Any]]]:
    pipeline = Pipeline()

    @pipeline.step(provides="user")
    async def load_user(user_id: int, client: str) -> str:
        await asyncio.sleep(IO)
        return f"user{user_id}"

    @pipeline.step(provides="orders")
    async def load_orders(user_id: int, client: str) -> list[int]:
        await asyncio.sleep(IO)
        return [user_id, user_id + 1]

    @pipeline.step(provides="prices")
    async def load_prices(orders: list[int], client: str) -> list[float]:
        await asyncio.sleep(IO)
        return [o * 1.5 for o in orders]

    @pipeline.step(provides="score")
    def score(orders: list[int], prices: list[float]) -> int:
        return cpu(orders, prices)

    @pipeline.step()
    async def report(user: str, prices: list[float], score: int) -> tuple[str, float, int]:
        return user, sum(prices), score

    @pipeline.step(provides="client", shared=True)
    async def connect(dsn: str) -> str:
        await asyncio.sleep(IO)  # once per process, read by every request's scope
        return f"pool({dsn})"

    pipeline.add_environment_resources(dsn="db")

    async def handle(user_id: int) -> Any:
        async with pipeline.scope(user_id=user_id):
            return await report()

    return pipeline, handle


def by_hand() -> Callable[[int], Awaitable[Any]]:
    connecting: list[asyncio.Task[str]] = []  # the shared client: opened once, awaited by all

    async def connect(dsn: str) -> str:
        await asyncio.sleep(IO)
        return f"pool({dsn})"

    async def shared_client() -> str:
        if not connecting:
            connecting.append(asyncio.ensure_future(connect("db")))
        return await asyncio.shield(connecting[0])

    async def load_user(user_id: int, client: str) -> str:
        await asyncio.sleep(IO)
        return f"user{user_id}"

    async def load_orders(user_id: int, client: str) -> list[int]:
        await asyncio.sleep(IO)
        return [user_id, user_id + 1]

    async def load_prices(orders: list[int], client: str) -> list[float]:
        await asyncio.sleep(IO)
        return [o * 1.5 for o in orders]

    async def handle(user_id: int) -> Any:
        client = await shared_client()
        user, orders = await asyncio.gather(
            load_user(user_id, client), load_orders(user_id, client)
        )
        prices = await load_prices(orders, client)
        score = await asyncio.get_running_loop().run_in_executor(None, cpu, orders, prices)
        return user, sum(prices), score

    return handle


def serve(handle: Callable[[int], Awaitable[Any]], requests: int, clients: int) -> list[float]:
    """``requests`` requests from ``clients`` concurrent clients; the wall time, then latencies."""

    async def main() -> list[float]:
        latencies: list[float] = []
        ids = iter(range(requests))

        async def client() -> None:
            for user_id in ids:
                start = time.perf_counter()
                result = await handle(user_id)
                latencies.append(time.perf_counter() - start)
                assert result[0] == f"user{user_id}"

        await handle(-1)  # warm up: the executor's threads
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return [time.perf_counter() - start, *latencies]

    return asyncio.run(main())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_web(reps: int, quick: bool) -> list[Row]:
    requests = 500 if quick else 2_000
    clients = 50
    _, scoped = web_pipeline()
    handwritten = by_hand()
    runs: dict[str, list[list[float]]] = {"hand": [], "scoped": []}
    for _ in range(reps):  # interleaved: drift hits both alike
        for name, handle in (("hand", handwritten), ("scoped", scoped)):
            gc.collect()
            runs[name].append(serve(handle, requests, clients))

    def figures(name: str) -> tuple[float, float, float]:
        throughput = statistics.median(requests / run[0] for run in runs[name])
        p50 = statistics.median(percentile(run[1:], 0.50) for run in runs[name]) * 1000
        p99 = statistics.median(percentile(run[1:], 0.99) for run in runs[name]) * 1000
        return throughput, p50, p99

    hand, scope = figures("hand"), figures("scoped")
    what = (
        f"web-like, {requests:,} requests, {clients} at a time "
        f"(3 I/O steps of 1 ms, 1 CPU step, 1 shared step)"
    )
    return [
        Row(f"{what}: throughput", "by hand", "scope per request", hand[0], scope[0], "req/s"),
        Row(f"{what}: p50 latency", "by hand", "scope per request", hand[1], scope[1], "ms"),
        Row(f"{what}: p99 latency", "by hand", "scope per request", hand[2], scope[2], "ms"),
    ]


def markdown(rows: list[Row]) -> str:
    lines = ["| case | baseline | measured | ratio |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and once")
    args = parser.parse_args()
    reps = 1 if args.quick else 3
    start = time.perf_counter()
    rows = [bench_unordered(reps, args.quick), bench_bad_items(reps, args.quick)]
    rows += bench_memory(args.quick)
    rows += bench_web(reps, args.quick)
    print(f"Python {platform.python_version()} on {platform.machine()}, medians of {reps}\n")
    print(markdown(rows))
    seconds = time.perf_counter() - start
    print(f"\n(ratio = measured cost / baseline cost, lower is better; {seconds:.0f} s in all)")


if __name__ == "__main__":
    main()
