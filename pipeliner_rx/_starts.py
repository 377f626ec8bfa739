"""Starting steps' tasks: directly, or through a queue when tasks may start eagerly.

With an eager task factory (``asyncio.eager_task_factory``) or ``eager_start`` (Python 3.12+), a
step's first part runs inside ``create_task``. Starts are then queued while a demand's walk
subscribes (so no step runs before its dependents listen) and while another start runs (so a
chain of steps that never suspend starts one after the other, not one inside the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._activation import Activation

__all__ = ["EAGER_START", "queued", "start"]

# Start steps' tasks eagerly (Python 3.12+ ``eager_start``): a step runs up to its first
# suspension in the callback that readied it, in a task of its own. Off by default; the
# benchmarks measure it (PIPELINER_EAGER_START=1).
EAGER_START = sys.version_info >= (3, 12) and os.environ.get("PIPELINER_EAGER_START") == "1"

_Start = tuple[asyncio.AbstractEventLoop, "Activation", dict[str, Any], Any]


class _Starts(threading.local):
    """Step starts waiting for the current walk or start to finish, per thread."""

    queue: deque[_Start] | None = None


_starts = _Starts()


def start(
    loop: asyncio.AbstractEventLoop,
    activation: Activation,
    kwargs: dict[str, Any],
    context: contextvars.Context,
) -> None:
    queue = _starts.queue
    if queue is not None:
        queue.append((loop, activation, kwargs, context))
        return
    with queued() as queue:
        queue.append((loop, activation, kwargs, context))


@contextlib.contextmanager
def queued() -> Iterator[deque[_Start]]:
    """Queue step starts until the block ends, then start them (and those they cause) in turn."""
    outer = _starts.queue
    if outer is not None:
        yield outer  # the outermost holder starts them
        return
    queue: deque[_Start] = deque()
    _starts.queue = queue
    try:
        yield queue
    finally:
        try:
            while queue:
                loop, activation, kwargs, context = queue.popleft()
                activation.launch(loop, kwargs, context)
        finally:
            _starts.queue = None
