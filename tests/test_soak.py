"""The soak script, reduced for CI: 10,000 scoped runs and 10,000 pushes, memory flat."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
LINE = re.compile(
    r"^soak: phase=(?P<phase>\w+) count=(?P<count>\d+) .*"
    r"traced_growth=(?P<traced>-?[\d.]+)% rss_growth=(?P<rss>-?[\d.]+)% .*ok=(?P<ok>\w+)$",
    re.MULTILINE,
)


@pytest.mark.timeout(300)
def test_soak_memory_stays_flat() -> None:
    """Exit status 0, and both phases grew by less than 10% in traced memory and in RSS."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--runs", "10000"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    phases = {m["phase"]: m for m in LINE.finditer(done.stdout)}
    assert phases.keys() == {"scoped_runs", "pushes"}, done.stdout
    assert phases["scoped_runs"]["count"] == "10000"
    for match in phases.values():
        assert float(match["traced"]) < 10 and float(match["rss"]) < 10, done.stdout
        assert match["ok"] == "True"
