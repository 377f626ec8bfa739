"""Each example in `examples/` runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_seed_example_prints_exactly_the_seed_output() -> None:
    assert run_example("example.py") == SEED_OUTPUT
