"""Helpers for tests that generate graphs."""

from __future__ import annotations

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
