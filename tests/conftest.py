from __future__ import annotations

import asyncio
import functools
import gc
import os
import platform
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
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


# --eager-tasks / PIPELINER_EAGER_TASKS=1: every test's event loop gets `asyncio.eager_task_factory`
# (Python 3.12+), as users and frameworks install it. pytest-asyncio's loops come from its
# `pytest_asyncio_loop_factories` hook; loops a sync test makes with `asyncio.run` from the fixture.
EAGER_ENV = "PIPELINER_EAGER_TASKS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--eager-tasks",
        action="store_true",
        help=f"run every test with asyncio.eager_task_factory (Python 3.12+); or set {EAGER_ENV}=1",
    )


def eager_tasks_requested(config: pytest.Config) -> bool:
    """Whether this run installs the eager task factory on every test's loop."""
    return bool(config.getoption("eager_tasks")) or os.environ.get(EAGER_ENV, "") not in ("", "0")


def new_eager_loop() -> asyncio.AbstractEventLoop:
    """A new event loop whose tasks start eagerly."""
    if sys.version_info < (3, 12):  # pytest_configure refuses the option before any loop is made
        raise RuntimeError("asyncio.eager_task_factory needs Python 3.12 or newer")
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    return loop


class EagerLoops:
    """The pytest-asyncio plugin hook, registered only when eager tasks are requested."""

    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        return {"eager": new_eager_loop}


def pytest_configure(config: pytest.Config) -> None:
    if not eager_tasks_requested(config):
        return
    if sys.version_info < (3, 12):
        raise pytest.UsageError(
            f"--eager-tasks ({EAGER_ENV}=1) needs Python 3.12 or newer, which has "
            f"`asyncio.eager_task_factory`; this is Python {platform.python_version()}. "
            "Run the suite with a newer Python, or without the option."
        )
    config.pluginmanager.register(EagerLoops(), "pipeliner-eager-tasks")


@pytest.fixture(autouse=True)
def eager_asyncio_run(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --eager-tasks, a test's own `asyncio.run(...)` also gets an eager loop."""
    if sys.version_info >= (3, 12) and eager_tasks_requested(request.config):
        eager_run = functools.partial(asyncio.run, loop_factory=new_eager_loop)
        monkeypatch.setattr(asyncio, "run", eager_run)
