"""A FastAPI service: process-wide values pushed once, a scope per request, cancellation.

The lifespan pushes the process-wide settings to the pipeline's environment, which every scope
starts with. The expensive client is a shared step: it is opened once, on the first request
that needs it, in the pipeline's own store, and every request's scope reads it from there
(concurrent first requests still open it once). Each request computes a small graph in
a scope of its own: three async I/O steps, one CPU-bound ``def`` step (it runs on a thread
pool, never on the event loop), under a deadline. When the client disconnects, the request's
steps are cancelled.

    pip install -e ".[service]" && python examples/service.py
    curl localhost:8000/users/ada/report
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from pipeliner_rx import Pipeline

T = TypeVar("T")

pipeline = Pipeline()


class Catalog:
    """Stands in for a database pool or a remote API: costly to open, shared by all requests."""

    def __init__(self, latency: float = 0.01) -> None:
        self.latency = latency
        self.users = {"ada": "Ada Lovelace", "grace": "Grace Hopper", "linus": "Linus Torvalds"}
        self.orders = {"ada": ["loom", "engine"], "grace": ["cobol"], "linus": ["kernel", "git"]}
        self.prices = {"loom": 120.0, "engine": 900.0, "cobol": 45.5, "kernel": 0.0, "git": 0.0}

    async def get(self, table: str, key: str) -> Any:
        await asyncio.sleep(self.latency)  # the network round trip
        return getattr(self, table)[key]  # KeyError for an unknown key

    async def close(self) -> None:
        await asyncio.sleep(0)


async def open_catalog() -> Catalog:
    await asyncio.sleep(0.05)  # connecting, authenticating, warming up: once per process
    return Catalog()


# -- the graph: user_id -> user, orders -> prices -> score -> report ----------------------------


@pipeline.step(provides="catalog", shared=True)
async def connect(open_client: Callable[[], Awaitable[Catalog]]) -> Catalog:
    """Once per process, whichever request needs it first; every scope reads the same one."""
    return await open_client()


@pipeline.step(provides="user")
async def load_user(user_id: str, catalog: Catalog) -> str:
    name: str = await catalog.get("users", user_id)
    return name


@pipeline.step(provides="orders")
async def load_orders(user_id: str, catalog: Catalog) -> list[str]:
    orders: list[str] = await catalog.get("orders", user_id)  # concurrently with load_user
    return orders


@pipeline.step(provides="prices")
async def load_prices(orders: list[str], catalog: Catalog) -> list[float]:
    return list(await asyncio.gather(*(catalog.get("prices", item) for item in orders)))


@pipeline.step(provides="score")
def risk_score(orders: list[str], prices: list[float]) -> int:
    """CPU-bound: a plain ``def``, so it runs on an executor thread, not on the event loop."""
    digest = b"".join(f"{o}:{p}".encode() for o, p in zip(orders, prices, strict=True))
    for _ in range(2_000):
        digest = hashlib.sha256(digest).digest()
    return digest[0] % 100


@pipeline.step(provides="report")
async def make_report(
    user_id: str, user: str, prices: list[float], score: int, currency: str
) -> dict[str, Any]:
    total = sum(prices)
    return {"user_id": user_id, "name": user, "total": total, "currency": currency, "risk": score}


# -- the web app --------------------------------------------------------------------------------


async def until_disconnected(request: Request) -> None:
    """Return once the client has gone away (the ASGI ``http.disconnect`` message)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it (servers do not)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # no-op once finished; cancelling the scope cancels its steps
        watcher.cancel()
        await asyncio.wait([task, watcher])
    if task.cancelled():
        raise HTTPException(499, "The client closed the request.")
    return task.result()


class Batch(BaseModel):
    user_ids: list[str]


def create_app(
    open_client: Callable[[], Awaitable[Catalog]] = open_catalog, deadline: float = 2.0
) -> FastAPI:
    """The service; ``open_client`` and ``deadline`` are parameters so tests can swap them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline.add_environment_resources(open_client=open_client, currency="EUR")
        try:
            yield
        finally:
            catalog = (
                await pipeline.resource("catalog") if pipeline.resource_ready("catalog") else None
            )
            pipeline.reset()
            if catalog is not None:
                await catalog.close()

    app = FastAPI(lifespan=lifespan)

    async def report_for(user_id: str) -> dict[str, Any]:
        async with asyncio.timeout(deadline), pipeline.scope(user_id=user_id):
            return await make_report()

    @app.get("/users/{user_id}/report")
    async def get_report(user_id: str, request: Request) -> dict[str, Any]:
        try:
            return await cancel_on_disconnect(request, report_for(user_id))
        except KeyError:
            raise HTTPException(404, f"No user {user_id!r}.") from None
        except TimeoutError:
            raise HTTPException(504, f"No report within {deadline} s.") from None

    @app.post("/reports")
    async def post_reports(batch: Batch, request: Request) -> list[dict[str, Any]]:
        """Many reports, at most 8 computed at once; a bad user gives an error entry."""

        async def collect() -> list[Any]:
            items = ({"user_id": user_id} for user_id in batch.user_ids)
            reports = pipeline.map(items, "report", max_concurrency=8, return_exceptions=True)
            async with aclosing(reports):
                return [report async for report in reports]

        reports = await cancel_on_disconnect(request, collect())
        return [
            {"user_id": user_id, "error": type(report).__name__}
            if isinstance(report, Exception)
            else report
            for user_id, report in zip(batch.user_ids, reports, strict=True)
        ]

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, port=8000)
