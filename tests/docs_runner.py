"""Run the Python blocks of one documentation page, in order, in one namespace (a script).

Used by `test_docs.py` as ``python tests/docs_runner.py RESULT_FILE`` with the blocks as JSON
on stdin: ``{"blocks": [{"line": int, "code": str, "requires": [str, ...]}, ...],
"block_timeout": float}``. The blocks share one fresh ``__main__`` module, as the cells of a
script would. A block with top-level ``await`` runs on one event loop kept for the whole page
(as in ``python -m asyncio`` or a notebook); the other blocks run as plain code, so they may
call ``asyncio.run`` themselves. Every block is bounded: past ``block_timeout`` seconds the
process dumps every thread's stack to stderr and exits.

The runner appends one JSON line per event to RESULT_FILE as it goes (``start``, then ``end``
with the block's stdout and error, or ``skip``), so that a block that hangs or kills the
process is still named.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import faulthandler
import importlib.util
import inspect
import io
import json
import sys
import traceback
import types
from typing import IO, Any


def _missing(modules: list[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _record(out: IO[str], **fields: Any) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def _leftover_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Cancel the tasks a page left running on its loop; return their descriptions."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    return [repr(task.get_coro()) for task in tasks]


def run(blocks: list[dict[str, Any]], block_timeout: float, out: IO[str]) -> None:
    """Run ``blocks`` in one fresh ``__main__`` namespace, recording each to ``out``."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    # Steps defined by the blocks live in `__main__`, as a script's do: process pools (forked
    # workers) find them there by reference.
    sys.modules["__main__"] = main
    loop = asyncio.new_event_loop()
    try:
        for block in blocks:
            line = block["line"]
            missing = _missing(block["requires"])
            if missing:
                _record(out, event="skip", line=line, missing=missing)
                continue
            _record(out, event="start", line=line)
            stdout = io.StringIO()
            error = None
            faulthandler.dump_traceback_later(block_timeout, exit=True)
            try:
                code = compile(
                    block["code"],
                    f"<{block['page']}:{line}>",
                    "exec",
                    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                )
                with contextlib.redirect_stdout(stdout):
                    if code.co_flags & inspect.CO_COROUTINE:  # a top-level `await`
                        loop.run_until_complete(eval(code, main.__dict__))
                    else:
                        exec(code, main.__dict__)
            except BaseException:  # the block's error is the result; SystemExit included
                error = traceback.format_exc()
            finally:
                faulthandler.cancel_dump_traceback_later()
            _record(out, event="end", line=line, stdout=stdout.getvalue(), error=error)
            if error is not None:
                return
        leftover = _leftover_tasks(loop)
        if leftover:
            _record(out, event="leftover", tasks=leftover)
    finally:
        loop.close()


def main() -> None:
    """Read the blocks from stdin, run them, write the results to ``sys.argv[1]``."""
    request = json.load(sys.stdin)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        run(request["blocks"], request["block_timeout"], out)


if __name__ == "__main__":
    main()
