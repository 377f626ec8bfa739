"""Each example in `examples/` runs and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SEED_OUTPUT = """\
divide called
mod called
get_division called
38 divided by 3 is 12 with 2 left
get_resmod called
result * modulus is 24 and result - modulus is 10
"""


def run_example(name: str) -> str:
    return run_example_full(name).stdout


def run_example_full(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=True,
    )


def test_seed_example_prints_exactly_the_seed_output() -> None:
    assert run_example("example.py") == SEED_OUTPUT


def test_per_request_example_keeps_requests_apart() -> None:
    assert run_example("per_request.py") == (
        "ada spent 13.50\ngrace spent 27.00\nlinus spent 40.50\n"
    )


def test_stream_example_prints_results_in_input_order() -> None:
    assert run_example("stream.py") == (
        "3 words, longest: pipelines\n"
        "6 words, longest: fresh\n"
        "5 words, longest: results\n"
        "6 words, longest: flight\n"
    )


def test_push_example_reports_once_everything_arrived() -> None:
    assert run_example("push.py") == (
        "waiting for inputs\nreading arrived\nlocation arrived\nreport: 21.5 °C in Lisbon\n"
    )


def test_dask_example_runs_heavy_steps_on_cluster_workers() -> None:
    pytest.importorskip("distributed")
    lines = run_example("dask_cluster.py").splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"sum_of_squares = 332833500 \(ran on worker [01]\)", lines[0])
    assert re.fullmatch(r"sum_of_cubes = 249500250000 \(ran on worker [01]\)", lines[1])


def test_progress_example_shows_all_30_steps() -> None:
    pytest.importorskip("rich")
    result = run_example_full("progress.py")
    assert result.stdout == "30 steps ran; report = 46\n"
    assert "30/30" in result.stderr


def test_live_example_prints_each_consistent_report_once() -> None:
    assert run_example("live.py") == (
        "portfolio: 320.00 USD\n"
        "portfolio: 325.00 USD\n"
        "portfolio: 335.00 USD\n"
        "portfolio: 301.50 EUR\n"
        "9 step runs in 3 revisions\n"
    )
