"""A live terminal display of a pipeline's steps, fed by `Pipeline.events`.

Needs the ``progress`` extra (``pip install "pipeliner_rx[progress]"``), which brings ``rich``.
Off unless used:

    from pipeliner_rx.progress import progress

    with progress(pipeline, total=len(pipeline.plan("report").runs)):
        await report()
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

try:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'pipeliner_rx.progress needs rich: pip install "pipeliner_rx[progress]"'
    ) from exc

from reactivex import abc

from ._api import default_pipeline
from ._events import StepEvent
from ._pipeline import Pipeline

__all__ = ["progress"]


class progress:
    """Show steps started, finished and failed while the block runs.

    Usable with ``with`` and ``async with``. Counts every step of every store of the pipeline
    (retried attempts count once). The bar's total is ``total`` when given (e.g. the length of
    ``pipeline.plan(target).runs``), else the number of steps seen so far.

    Args:
        pipeline: the pipeline to watch (default: the default pipeline).
        total: how many steps to expect, if known.
        description: the label of the bar.
        console: a ``rich.console.Console`` to draw on (default: stderr's).
        transient: erase the display when the block ends.

    Attributes:
        states: the last event kind of each ``(scope, step)`` seen.
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        *,
        total: int | None = None,
        description: str = "steps",
        console: Console | None = None,
        transient: bool = False,
    ) -> None:
        self.pipeline = pipeline if pipeline is not None else default_pipeline()
        self.total = total
        self.description = description
        self.states: dict[tuple[int, str], str] = {}
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console if console is not None else Console(stderr=True),
            transient=transient,
        )
        self._task: TaskID | None = None
        self._subscription: abc.DisposableBase | None = None

    def _on_event(self, event: StepEvent) -> None:
        self.states[(event.scope, event.step)] = event.kind
        kinds = list(self.states.values())
        running = [step for (_, step), kind in self.states.items() if kind == "started"]
        failed = kinds.count("failed")
        status = f"running: {', '.join(running[:3])}{'…' if len(running) > 3 else ''}"
        if failed:
            status += f"  [red]failed: {failed}[/red]"
        assert self._task is not None
        self._progress.update(
            self._task,
            total=self.total if self.total is not None else len(kinds),
            completed=len(kinds) - len(running),
            status=status if running else ("[red]" + status[9:] if failed else "done"),
        )

    def __enter__(self) -> progress:
        self._task = self._progress.add_task(self.description, total=self.total, status="")
        self._progress.start()
        self._subscription = self.pipeline.events.subscribe(self._on_event)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            self._subscription.dispose()
        self._progress.stop()

    async def __aenter__(self) -> progress:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.__exit__(*exc_info)
