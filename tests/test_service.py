"""examples/service.py: a FastAPI app over a pipeline, driven by httpx (and once by uvicorn)."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx
from dags import run
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent


def load_service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service", ROOT / "examples" / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["service"] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


service = load_service()

EXPECTED = {
    "ada": ("Ada Lovelace", ["loom", "engine"], [120.0, 900.0]),
    "grace": ("Grace Hopper", ["cobol"], [45.5]),
    "linus": ("Linus Torvalds", ["kernel", "git"], [0.0, 0.0]),
}


def expected_report(user_id: str) -> dict[str, Any]:
    name, orders, prices = EXPECTED[user_id]
    return {
        "user_id": user_id,
        "name": name,
        "total": sum(prices),
        "currency": "EUR",
        "risk": service.risk_score.fn(orders, prices),
    }


class GatedCatalog(service.Catalog):  # type: ignore[name-defined,misc]
    """Every lookup waits for ``gate``; counts lookups and notices their cancellation."""

    def __init__(self, until: int = 1) -> None:
        super().__init__(latency=0)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()  # `until` user lookups are waiting at the gate
        self.cancelled = asyncio.Event()
        self.until = until
        self.user_lookups = 0

    async def get(self, table: str, key: str) -> Any:
        if table == "users":
            self.user_lookups += 1
            if self.user_lookups >= self.until:
                self.entered.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await super().get(table, key)


def opener(catalog: Any, opened: list[Any] | None = None) -> Callable[[], Awaitable[Any]]:
    async def open_client() -> Any:
        if opened is not None:
            opened.append(catalog)
        return catalog

    return open_client


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


async def no_task_left() -> None:
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    if left:
        await asyncio.wait_for(asyncio.wait(left), 2)
    assert asyncio.all_tasks() == {current}


async def test_report_is_computed_once_the_client_is_opened_once() -> None:
    opened: list[Any] = []
    app = service.create_app(opener(service.Catalog(latency=0), opened))
    async with serving(app) as client:
        for user_id in ("ada", "grace", "ada"):
            response = await asyncio.wait_for(client.get(f"/users/{user_id}/report"), 5)
            assert response.status_code == 200
            assert response.json() == expected_report(user_id)
    assert len(opened) == 1  # by the shared step, once for every request
    assert not service.pipeline.resource_ready("catalog")  # the lifespan's end resets it
    await no_task_left()


async def test_unknown_user_is_404() -> None:
    async with serving(service.create_app(opener(service.Catalog(latency=0)))) as client:
        response = await asyncio.wait_for(client.get("/users/nobody/report"), 5)
    assert response.status_code == 404
    await no_task_left()


async def test_deadline_gives_504_and_cancels_the_steps() -> None:
    catalog = GatedCatalog()  # never opens
    async with serving(service.create_app(opener(catalog), deadline=0.05)) as client:
        response = await asyncio.wait_for(client.get("/users/ada/report"), 5)
        assert response.status_code == 504
        assert catalog.cancelled.is_set()
    await no_task_left()


async def test_concurrent_requests_do_not_see_each_others_values() -> None:
    user_ids = ["ada", "grace", "linus"] * 10
    catalog = GatedCatalog(until=len(user_ids))
    opened: list[Any] = []
    async with serving(service.create_app(opener(catalog, opened))) as client:
        requests = [
            asyncio.ensure_future(client.get(f"/users/{user_id}/report")) for user_id in user_ids
        ]
        await asyncio.wait_for(catalog.entered.wait(), 5)  # all 30 are in flight at once
        catalog.gate.set()
        responses = await asyncio.wait_for(asyncio.gather(*requests), 10)
    assert [r.json() for r in responses] == [expected_report(u) for u in user_ids]
    assert len(opened) == 1  # 30 concurrent first requests opened the client once
    await no_task_left()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([*EXPECTED, "nobody"]), max_size=12))
def test_concurrent_requests_each_get_their_own_answer(user_ids: list[str]) -> None:
    async def main() -> None:
        async with serving(service.create_app(opener(service.Catalog(latency=0)))) as client:
            responses = await asyncio.gather(*(client.get(f"/users/{u}/report") for u in user_ids))
        for user_id, response in zip(user_ids, responses, strict=True):
            if user_id == "nobody":
                assert response.status_code == 404
            else:
                assert response.json() == expected_report(user_id)
        await no_task_left()

    run(main)


async def test_batch_reports_keep_going_past_a_bad_user() -> None:
    async with serving(service.create_app(opener(service.Catalog(latency=0)))) as client:
        response = await asyncio.wait_for(
            client.post("/reports", json={"user_ids": ["ada", "nobody", "linus"]}), 5
        )
    assert response.json() == [
        expected_report("ada"),
        {"user_id": "nobody", "error": "KeyError"},
        expected_report("linus"),
    ]
    await no_task_left()


async def test_cancelled_request_cancels_its_steps() -> None:
    # In-process (ASGITransport) the app runs in the request's task: a client that gives up
    # cancels it, as a server that cancels handlers on disconnect would.
    catalog = GatedCatalog()
    async with serving(service.create_app(opener(catalog), deadline=60)) as client:
        request = asyncio.ensure_future(client.get("/users/ada/report"))
        await asyncio.wait_for(catalog.entered.wait(), 5)
        request.cancel()
        await asyncio.wait_for(catalog.cancelled.wait(), 5)
        with pytest.raises(asyncio.CancelledError):
            await request
    await no_task_left()


async def test_client_disconnect_cancels_the_requests_steps() -> None:
    # As uvicorn does it: the handler is not cancelled; the app hears `http.disconnect`.
    catalog = GatedCatalog()
    app = service.create_app(opener(catalog), deadline=60)  # only the disconnect cancels
    gone = asyncio.Event()
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/ada/report",
        "raw_path": b"/users/ada/report",
        "query_string": b"",
        "headers": [(b"host", b"service")],
        "server": ("service", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
    }
    messages = 0

    async def receive() -> dict[str, Any]:
        nonlocal messages
        messages += 1
        if messages == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        handling = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.wait_for(catalog.entered.wait(), 5)
        gone.set()
        await asyncio.wait_for(catalog.cancelled.wait(), 5)
        await asyncio.wait_for(handling, 5)
    assert sent[0]["status"] == 499
    await no_task_left()


async def test_real_server_cancels_the_steps_when_the_client_goes_away() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    catalog = GatedCatalog()
    app = service.create_app(opener(catalog), deadline=60)  # only the disconnect cancels
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # connections wait in the backlog until the server accepts them
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving_task = asyncio.ensure_future(server.serve(sockets=[listener]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            request = asyncio.ensure_future(client.get("/users/ada/report"))
            await asyncio.wait_for(catalog.entered.wait(), 5)
            request.cancel()  # closes the connection
            with pytest.raises(asyncio.CancelledError):
                await request
        await asyncio.wait_for(catalog.cancelled.wait(), 5)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving_task, 10)
        listener.close()
    await no_task_left()
