"""The documentation's code runs: every ```python block of README.md and docs/, page by page.

Each page runs in a fresh process (`docs_runner.py`): its blocks in order, in one namespace, so
nothing (the default pipeline included) leaks between pages. A block with top-level ``await``
runs on one event loop kept for the page; the others run as plain script code.

An HTML comment on the line before a fenced block (blank lines between are allowed) changes
what happens to it:

- ``<!-- docs-test: skip -->``: a python block that is not runnable on purpose.
- ``<!-- docs-test: requires MODULE ... -->``: a python block that runs only where each module
  can be imported (e.g. an optional integration); otherwise it is skipped, and so is the page
  test once the page's other blocks passed, saying which blocks were skipped.
- ``<!-- docs-test: output -->``: a non-python block holding the exact stdout of the python
  block before it (a first line starting with ``$ `` is the command and is not compared).

The error reference is also checked to cover every class of `pipeliner_rx.exceptions`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pipeliner_rx.exceptions

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

BLOCK_TIMEOUT = 60.0  # seconds for one block, enforced inside the runner
PAGE_TIMEOUT = 150.0  # seconds for a whole page's process

PYTHON = {"python", "py"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)(?P<rest>.*)$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page."""

    page: str
    line: int  # of the opening fence, counting from 1
    lang: str
    code: str
    directive: str = ""  # "", "skip", "output" or "requires MODULE ..."

    @property
    def requires(self) -> list[str]:
        return self.directive.split()[1:] if self.directive.startswith("requires") else []


def extract(text: str, page: str) -> list[Block]:
    """The fenced blocks of ``text`` with their markers; ValueError for a misplaced marker."""
    blocks: list[Block] = []
    lines = text.splitlines()
    marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        found = MARKER.match(line)
        if found:
            if marker is not None:
                raise ValueError(f"{page}:{marker[0]}: a docs-test marker must precede a block")
            marker = (index + 1, found["directive"])
            index += 1
            continue
        opening = FENCE.match(line)
        if opening is None:
            if line.strip() and marker is not None:
                raise ValueError(f"{page}:{marker[0]}: a docs-test marker must precede a block")
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        index += 1
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else "")
            index += 1
        else:
            raise ValueError(f"{page}:{index}: a fenced block is not closed")
        directive = marker[1] if marker is not None else ""
        blocks.append(
            Block(page, index - len(body), opening["lang"].lower(), "\n".join(body), directive)
        )
        marker = None
        index += 1
    if marker is not None:
        raise ValueError(f"{page}:{marker[0]}: a docs-test marker must precede a block")
    _check_directives(blocks)
    return blocks


def _check_directives(blocks: Sequence[Block]) -> None:
    seen_python = False
    for block in blocks:
        where = f"{block.page}:{block.line}"
        word = block.directive.split()[0] if block.directive else ""
        is_python = block.lang in PYTHON
        if word in ("skip", "requires") and not is_python:
            raise ValueError(f"{where}: `{word}` marks python blocks only")
        if word == "requires" and not block.requires:
            raise ValueError(f"{where}: `requires` names the modules the block needs")
        if word == "output" and (is_python or not seen_python):
            raise ValueError(f"{where}: `output` marks a non-python block after a python block")
        if word not in ("", "skip", "requires", "output"):
            raise ValueError(f"{where}: unknown docs-test marker `{block.directive}`")
        seen_python = seen_python or is_python


@dataclass
class PageRun:
    """What running a page's blocks found."""

    problems: list[str] = field(default_factory=list)
    ran: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _expected_output(block: Block) -> str:
    lines = block.code.splitlines()
    if lines and lines[0].startswith("$ "):
        lines = lines[1:]
    return "".join(line + "\n" for line in lines)


def run_blocks(
    blocks: Sequence[Block], workdir: Path, block_timeout: float = BLOCK_TIMEOUT
) -> PageRun:
    """Run the python blocks of one page in a fresh process; collect what went wrong."""
    result = PageRun()
    runnable: list[Block] = []
    expected: dict[int, str] = {}  # line of a python block -> its documented output
    for block in blocks:
        if block.lang in PYTHON and block.directive != "skip":
            runnable.append(block)
        elif block.directive == "output":
            python = [b for b in blocks if b.lang in PYTHON and b.line < block.line][-1]
            expected[python.line] = _expected_output(block)
    if not runnable:
        return result
    request = {
        "blocks": [
            {"page": b.page, "line": b.line, "code": b.code, "requires": b.requires}
            for b in runnable
        ],
        "block_timeout": block_timeout,
    }
    record = workdir / "docs-run.jsonl"
    try:
        process = subprocess.run(
            [sys.executable, str(RUNNER), str(record)],
            input=json.dumps(request),
            capture_output=True,
            encoding="utf-8",
            cwd=workdir,
            timeout=PAGE_TIMEOUT,
        )
        stderr = process.stderr
    except subprocess.TimeoutExpired as exc:
        stderr = f"(the page's process timed out after {PAGE_TIMEOUT} s)\n{exc.stderr!r}"
    events = [json.loads(line) for line in record.read_text("utf-8").splitlines()]
    started: int | None = None
    for event in events:
        where = f"{runnable[0].page}:{event.get('line')}"
        if event["event"] == "start":
            started = event["line"]
        elif event["event"] == "skip":
            result.skipped.append(f"{where} (needs {', '.join(event['missing'])})")
        elif event["event"] == "end":
            started = None
            result.ran.append(event["line"])
            if event["error"] is not None:
                result.problems.append(f"{where} raised:\n{event['error']}\nstderr:\n{stderr}")
            elif event["line"] in expected and event["stdout"] != expected[event["line"]]:
                result.problems.append(
                    f"{where} printed\n{event['stdout']!r}\nbut the page shows\n"
                    f"{expected[event['line']]!r}"
                )
        elif event["event"] == "leftover":
            result.problems.append(f"the page left tasks running: {event['tasks']}")
    if started is not None:
        result.problems.append(
            f"{runnable[0].page}:{started} did not finish (hung or killed the process); "
            f"stderr:\n{stderr}"
        )
    done = {*result.ran, *(b["line"] for b in [e for e in events if e["event"] == "skip"])}
    if not result.problems and done != {b.line for b in runnable}:
        result.problems.append(f"not every block ran; stderr:\n{stderr}")
    return result


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_docs_page_code_runs(page: Path, tmp_path: Path) -> None:
    blocks = extract(page.read_text("utf-8"), _page_id(page))
    run = run_blocks(blocks, tmp_path)
    assert not run.problems, "\n\n".join(run.problems)
    if run.skipped:
        pytest.skip(
            f"{len(run.ran)} blocks passed; skipped {'; '.join(run.skipped)}",
        )


def test_docs_have_python_blocks_and_checked_outputs() -> None:
    blocks = [b for page in PAGES for b in extract(page.read_text("utf-8"), _page_id(page))]
    python = [b for b in blocks if b.lang in PYTHON]
    assert len(python) >= 30
    # Sparing use of skip: most blocks run.
    assert sum(b.directive == "skip" for b in python) * 5 <= len(python)
    assert any(b.page == "README.md" and b.directive == "output" for b in blocks)


def test_error_reference_covers_every_exception_class() -> None:
    text = (ROOT / "docs" / "errors.md").read_text("utf-8")
    headings = set(re.findall(r"^## `(\w+)`", text, flags=re.MULTILINE))
    assert headings == set(pipeliner_rx.exceptions.__all__)


# -- the checker itself --------------------------------------------------------------------------


def _page(text: str) -> list[Block]:
    return extract(text, "page.md")


def test_extract_reads_fences_markers_and_indented_blocks() -> None:
    blocks = _page(
        "Text\n\n<!-- docs-test: skip -->\n```python\nnot run\n```\n\n"
        '!!! note\n    ```py title="x.py"\n    x = 1\n    ```\n\n'
        "<!-- docs-test: output -->\n\n```\n$ python x.py\n1\n```\n"
        "````markdown\n```python\ninner\n```\n````\n"
    )
    assert [(b.line, b.lang, b.code, b.directive) for b in blocks] == [
        (4, "python", "not run", "skip"),
        (9, "py", "x = 1", ""),
        (15, "", "$ python x.py\n1", "output"),
        (19, "markdown", "```python\ninner\n```", ""),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: skip -->\nprose\n```python\nx\n```\n",
        "<!-- docs-test: skipp -->\n```python\nx\n```\n",
        "<!-- docs-test: skip -->\n```text\nx\n```\n",
        "<!-- docs-test: output -->\n```text\nx\n```\n",
        "```python\nx\n```\n<!-- docs-test: output -->\n```python\nx\n```\n",
        "<!-- docs-test: requires -->\n```python\nx\n```\n",
        "```python\nx\n",
        "text\n<!-- docs-test: skip -->\n",
    ],
)
def test_extract_rejects_misplaced_or_unknown_markers(text: str) -> None:
    with pytest.raises(ValueError):
        _page(text)


def test_blocks_share_one_namespace_and_top_level_await_runs(tmp_path: Path) -> None:
    run = run_blocks(
        _page(
            "```python\nimport asyncio\nx = 20\n```\n"
            "```python\nx += await asyncio.sleep(0, 1)\nprint(x)\n```\n"
            "<!-- docs-test: output -->\n```\n21\n```\n"
            "```python\nprint(asyncio.run(asyncio.sleep(0, x + 1)), __name__)\n```\n"
            "<!-- docs-test: output -->\n```\n22 __main__\n```\n"
        ),
        tmp_path,
    )
    assert run.problems == []
    assert run.ran == [1, 5, 13]


def test_a_failing_block_is_reported_with_its_line(tmp_path: Path) -> None:
    run = run_blocks(
        _page("```python\nx = 1\n```\n\n```python\nraise KeyError(x)\n```\n```python\n```\n"),
        tmp_path,
    )
    assert len(run.problems) == 1
    assert "page.md:5 raised" in run.problems[0] and "KeyError: 1" in run.problems[0]
    assert run.ran == [1, 5]  # nothing runs after a failure


def test_a_wrong_documented_output_is_reported(tmp_path: Path) -> None:
    run = run_blocks(
        _page("```python\nprint('a')\n```\n<!-- docs-test: output -->\n```\nb\n```\n"), tmp_path
    )
    assert len(run.problems) == 1 and "printed\n'a\\n'" in run.problems[0]


def test_a_hanging_block_is_stopped_and_named(tmp_path: Path) -> None:
    run = run_blocks(
        _page("```python\nimport time\n```\n```python\ntime.sleep(60)\n```\n"),
        tmp_path,
        block_timeout=1.0,
    )
    assert len(run.problems) == 1
    assert "page.md:4 did not finish" in run.problems[0]
    assert "time.sleep(60)" in run.problems[0] or "Timeout" in run.problems[0]


def test_requires_skips_a_block_when_its_module_is_missing(tmp_path: Path) -> None:
    run = run_blocks(
        _page(
            "<!-- docs-test: requires json no_such_module_here -->\n"
            "```python\nraise Exception\n```\n"
            "<!-- docs-test: requires json -->\n```python\nimport json\n```\n"
        ),
        tmp_path,
    )
    assert run.problems == []
    assert run.skipped == ["page.md:2 (needs no_such_module_here)"]
    assert run.ran == [6]


def test_tasks_left_running_by_a_page_are_reported(tmp_path: Path) -> None:
    run = run_blocks(
        _page(
            "```python\nimport asyncio\n"
            "task = asyncio.create_task(asyncio.sleep(60))\nawait asyncio.sleep(0)\n```\n"
        ),
        tmp_path,
    )
    assert len(run.problems) == 1 and "left tasks running" in run.problems[0]
