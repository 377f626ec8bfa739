"""The progress display, fed by the events stream."""

from __future__ import annotations

import asyncio
import io

import pytest

from pipeliner_rx import Pipeline

pytest.importorskip("rich")

from rich.console import Console

from pipeliner_rx.progress import progress


async def test_progress_counts_finished_and_failed_steps(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a() -> int:
        return 1

    @pipeline.step(provides="b")
    async def make_b(a: int) -> int:
        raise ValueError("b broke")

    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with progress(pipeline, total=2, console=console) as shown:
        with pytest.raises(ValueError):
            await asyncio.wait_for(make_b(), 1)
    assert shown.states == {(0, "make_a"): "succeeded", (0, "make_b"): "failed"}
    text = out.getvalue()
    assert "2/2" in text and "failed: 1" in text


async def test_progress_stops_listening_after_the_block(pipeline: Pipeline) -> None:
    @pipeline.step(provides="a")
    async def make_a() -> int:
        return 1

    console = Console(file=io.StringIO())
    async with progress(pipeline, console=console) as shown:
        await make_a()
    pipeline.reset()
    await make_a()
    assert shown.states == {(0, "make_a"): "succeeded"}
    assert not pipeline._engine.events.observers
