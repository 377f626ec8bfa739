"""The command line: graph and plan, and its error paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeliner_rx._cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "example.py")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeliner_rx", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_graph_mermaid_of_the_example_without_running_its_main() -> None:
    result = cli("graph", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart LR")
    assert '"get_division"' in result.stdout
    assert "called" not in result.stdout  # main() did not run


def test_graph_dot_with_target_to_file(tmp_path: Path) -> None:
    out = tmp_path / "graph.dot"
    result = cli("graph", EXAMPLE, "--format", "dot", "--target", "result", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("digraph") and '"step:divide"' in text and "get_division" not in text


def test_graph_svg_uses_graphviz(tmp_path: Path) -> None:
    if shutil.which("dot") is None and not os.environ.get("CI"):
        pytest.skip("Graphviz `dot` is not installed")
    out = tmp_path / "graph.svg"
    result = cli("graph", EXAMPLE, "--format", "svg", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "<svg" in out.read_text()


def test_graph_svg_without_graphviz_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["graph", EXAMPLE, "--format", "svg"]) == 1
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and len(err.strip().splitlines()) == 1


def test_plan_of_the_example() -> None:
    result = cli("plan", EXAMPLE, "get_division", "base=38", "divisor=3")
    assert result.returncode == 0, result.stderr
    assert "run   divide" in result.stdout and "skip  base_provider" in result.stdout
    assert "called" not in result.stdout


def test_module_spec_and_attribute(tmp_path: Path) -> None:
    (tmp_path / "my_flows.py").write_text(
        "from pipeliner_rx import Pipeline\n"
        "first = Pipeline()\n"
        "second = Pipeline()\n"
        "@first.step(provides='x')\n"
        "async def make_x(): return 1\n"
        "@second.step(provides='y')\n"
        "async def make_y(): return 2\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run: Callable[..., subprocess.CompletedProcess[str]] = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pipeliner_rx", *a], capture_output=True, text=True, env=env
    )
    ambiguous = run("graph", "my_flows")
    assert ambiguous.returncode == 1
    assert "several pipelines (first, second)" in ambiguous.stderr
    assert "Traceback" not in ambiguous.stderr
    chosen = run("graph", "my_flows:second")
    assert chosen.returncode == 0 and '"make_y"' in chosen.stdout and "make_x" not in chosen.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["graph", "no/such/file.py"], "no such file"),
        (["graph", "no_such_module_anywhere"], "no such file or module"),
        (["graph", f"{EXAMPLE}:missing"], "no attribute `missing`"),
        (["plan", EXAMPLE, "not_a_target"], "`not_a_target` is neither"),
        (["plan", EXAMPLE, "result", "oops"], "name=value"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_no_pipeline_found(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    result = cli("graph", str(empty))
    assert result.returncode == 1 and "no pipeline found" in result.stderr


def test_bad_usage_exits_2() -> None:
    result = cli("graph")
    assert result.returncode == 2 and "usage" in result.stderr


def test_console_script_is_declared() -> None:
    assert "pipeliner-rx = pipeliner_rx._cli:main" in (ROOT / "setup.cfg").read_text()
