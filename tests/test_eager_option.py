"""The suite's `--eager-tasks` option: every test's loop starts tasks eagerly, or the run fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EAGER_ENV, eager_tasks_requested

ROOT = Path(__file__).resolve().parent.parent


async def task_ran_before_the_creator_yielded() -> bool:
    """Whether a new task ran to its end inside `create_task`, as only eager tasks do."""
    ran: list[bool] = []

    async def mark() -> None:
        ran.append(True)

    task = asyncio.create_task(mark())
    eager = bool(ran)
    await asyncio.wait_for(task, 1)
    return eager


def expected_task_factory(config: pytest.Config) -> object:
    if sys.version_info >= (3, 12) and eager_tasks_requested(config):
        return asyncio.eager_task_factory
    return None


async def test_a_tests_loop_has_the_task_factory_the_run_asked_for(
    request: pytest.FixtureRequest,
) -> None:
    factory = asyncio.get_running_loop().get_task_factory()
    assert factory is expected_task_factory(request.config)
    assert await task_ran_before_the_creator_yielded() is eager_tasks_requested(request.config)


def test_a_sync_tests_own_asyncio_run_has_the_task_factory_the_run_asked_for(
    request: pytest.FixtureRequest,
) -> None:
    async def main() -> tuple[object, bool]:
        factory = asyncio.get_running_loop().get_task_factory()
        return factory, await task_ran_before_the_creator_yielded()

    factory, eager = asyncio.run(main())
    assert factory is expected_task_factory(request.config)
    assert eager is eager_tasks_requested(request.config)


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--eager-tasks"], {}), ([], {EAGER_ENV: "1"})],
    ids=["option", "environment"],
)
def test_eager_tasks_run_them_on_3_12_and_refuse_3_11(args: list[str], env: dict[str, str]) -> None:
    """Requested either way, the option is in effect on 3.12+ and a clear usage error on 3.11."""
    this_file = Path(__file__).relative_to(ROOT).as_posix()
    loop_tests = [
        f"{this_file}::test_a_tests_loop_has_the_task_factory_the_run_asked_for",
        f"{this_file}::test_a_sync_tests_own_asyncio_run_has_the_task_factory_the_run_asked_for",
    ]
    outer = {k: v for k, v in os.environ.items() if k != EAGER_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, *loop_tests],
        capture_output=True,
        encoding="utf-8",
        cwd=ROOT,
        env={**outer, **env},
        timeout=120,
        check=False,
    )
    if sys.version_info >= (3, 12):
        assert run.returncode == 0, run.stdout + run.stderr
        assert "2 passed" in run.stdout
    else:
        assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
        assert "needs Python 3.12 or newer" in run.stderr
