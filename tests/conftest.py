from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import pipeliner_rx
from pipeliner_rx import Pipeline, _api
from pipeliner_rx._store import Store

# Every store made during a test, so that the test can be checked for leftovers. Stores have
# slots and no weak references: the list is emptied after each test.
_stores: list[Store] = []
_store_init = Store.__init__


def _tracked_init(self: Store, *args: Any, **kwargs: Any) -> None:
    _store_init(self, *args, **kwargs)
    _stores.append(self)


Store.__init__ = _tracked_init  # type: ignore[method-assign]


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@pytest.fixture(autouse=True)
def fresh_default_pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """Each test gets an empty default pipeline, as a fresh process would."""
    fresh = Pipeline()
    monkeypatch.setattr(_api, "_default", fresh)
    assert pipeliner_rx.default_pipeline() is fresh
    yield fresh


@pytest.fixture(autouse=True)
async def nothing_left_behind() -> AsyncIterator[list[dict[str, Any]]]:
    """After every test: no task pending, no observer left on a subject, no unhandled error.

    Checks the test's own event loop (and the stores bound to it). An error that reached the
    loop's exception handler, such as "Task exception was never retrieved", fails the test;
    a test that expects one installs its own handler.
    """
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    _stores.clear()
    yield reports
    current = asyncio.current_task()
    leftover = [task for task in asyncio.all_tasks() if task is not current]
    if leftover:
        # Tasks the library has just cancelled finish within a turn or two; others are leaks.
        await asyncio.wait(leftover, timeout=2)
    pending = [task for task in leftover if not task.done()]
    stores = [store for store in _stores if store.loop is loop]
    _stores.clear()
    assert not pending, f"tasks left pending: {pending}"
    for store in stores:
        assert not store.active, f"steps left active in store {store.id}: {store.active}"
        assert not store.private, f"steps left running in store {store.id}"
        assert not store.feeds, f"feeds left waiting in store {store.id}"
        for name, subject in store.subjects.items():
            assert not subject.observers, f"observers left on `{name}` of store {store.id}"
    # Collect now, so that "exception was never retrieved" is reported within this test.
    gc.collect()
    await asyncio.sleep(0)
    assert not reports, f"errors reached the loop's exception handler: {reports}"
