"""Helpers for tests that generate graphs."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from pipeliner_rx import Pipeline, Step


def add_step(
    pipeline: Pipeline, name: str, needs: list[str], provides: str | None, fn: Any
) -> Step[Any]:
    """Register ``fn`` as step ``name`` taking the resources ``needs`` (a generated graph)."""
    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in needs]
    )
    return pipeline.step(provides=provides)(fn)


def blocking_step(
    pipeline: Pipeline, provides: str, name: str
) -> tuple[asyncio.Event, asyncio.Event, Step[Any]]:
    """A step that blocks until cancelled: events set when it starts and when it is cancelled."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def block() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    block.__name__ = block.__qualname__ = name
    return started, cancelled, pipeline.step(provides=provides)(block)
