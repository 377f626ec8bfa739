"""When two values of a resource count as the same: the one rule for conflicts and live pushes."""

from __future__ import annotations

from typing import Any

__all__ = ["same"]


def same(current: Any, new: Any) -> bool:
    """Whether ``new`` is the same value as ``current``: identical, or ``==`` says so.

    An ``==`` that raises counts as different (arrays, whose ``==`` is elementwise, and
    objects that refuse comparison): recomputing is safe, silently keeping a stale value is not.
    """
    if current is new:
        return True
    try:
        return bool(current == new)
    except Exception:  # e.g. arrays, whose == is elementwise: treat as different
        return False
