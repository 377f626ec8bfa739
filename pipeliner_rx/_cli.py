"""The command line: ``python -m pipeliner_rx graph|plan ...`` (also ``pipeliner-rx``)."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import runpy
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._api import default_pipeline
from ._graph import render_dot
from ._pipeline import Pipeline
from ._step import Step
from .exceptions import PipelineError

__all__ = ["main"]

PROG = "pipeliner-rx"
GRAPHVIZ_HINT = (
    "Graphviz `dot` is not installed, and svg and png need it. Install Graphviz "
    "(`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`), "
    "or use `--format dot` or `--format mermaid`."
)


class CommandError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def _load(spec: str) -> Pipeline:
    """Import ``PATH_OR_MODULE[:ATTR]`` (without running ``__main__``) and find its pipeline."""
    source, _, attr = spec.partition(":")
    if not source:
        raise CommandError(f"no file or module given in `{spec}`")
    path = Path(source)
    namespace: dict[str, Any]
    try:
        if source.endswith(".py") or path.exists():
            if not path.is_file():
                raise CommandError(f"no such file: {source}")
            # Like `python FILE`: its own folder first on sys.path, any name but `__main__`.
            sys.path.insert(0, str(path.resolve().parent))
            namespace = runpy.run_path(str(path), run_name=f"__pipeliner_rx_{path.stem}__")
        else:
            sys.path.insert(0, os.getcwd())
            namespace = vars(importlib.import_module(source))
    except CommandError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and source.startswith(exc.name):
            raise CommandError(f"no such file or module: {source}") from exc
        raise CommandError(f"could not import {source}: {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:  # the user's module failed; say so in one line
        raise CommandError(f"could not import {source}: {type(exc).__name__}: {exc}") from exc
    if attr:
        if attr not in namespace:
            raise CommandError(f"{source} has no attribute `{attr}`")
        found = namespace[attr]
        if isinstance(found, Step):
            return found.pipeline
        if not isinstance(found, Pipeline):
            raise CommandError(f"`{attr}` in {source} is a {type(found).__name__}, not a Pipeline")
        return found
    candidates: dict[int, tuple[str, Pipeline]] = {}
    for name, value in namespace.items():
        if isinstance(value, Pipeline) and not name.startswith("_"):
            candidates.setdefault(id(value), (name, value))
    default = default_pipeline()
    if default.steps and id(default) not in candidates:
        candidates[id(default)] = ("the default pipeline", default)
    if not candidates:
        raise CommandError(f"no pipeline found in {source}: it defines no Pipeline and no steps")
    if len(candidates) > 1:
        names = ", ".join(name for name, _ in candidates.values())
        raise CommandError(f"{source} has several pipelines ({names}); name one as {source}:NAME")
    return next(iter(candidates.values()))[1]


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string


def _render(source: str, fmt: str) -> bytes:
    try:
        output = render_dot(source, fmt)
    except subprocess.CalledProcessError as exc:
        raise CommandError(f"dot failed: {exc.stderr.decode(errors='replace').strip()}") from exc
    if output is None:
        raise CommandError(GRAPHVIZ_HINT)
    return output


def _graph(args: argparse.Namespace) -> None:
    pipeline = _load(args.pipeline)
    targets = [args.target] if args.target else None
    if args.format == "mermaid":
        output: bytes = pipeline.to_mermaid(targets).encode()
    else:
        source = pipeline.to_dot(targets)
        output = source.encode() if args.format == "dot" else _render(source, args.format)
    if args.output:
        Path(args.output).write_bytes(output)
    else:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()


def _plan(args: argparse.Namespace) -> None:
    pipeline = _load(args.pipeline)
    resources: dict[str, Any] = {}
    for item in args.resources:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise CommandError(f"resources are given as name=value; got `{item}`")
        resources[name] = _value(text)
    print(pipeline.plan(args.target, **resources))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Look at a pipeliner_rx pipeline: draw its graph or plan a call."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    graph = commands.add_parser("graph", help="print or write the pipeline's graph")
    graph.add_argument("pipeline", metavar="PATH_OR_MODULE[:ATTR]")
    graph.add_argument("--format", choices=["mermaid", "dot", "svg", "png"], default="mermaid")
    graph.add_argument("--target", help="draw only what this resource or step needs")
    graph.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    graph.set_defaults(run=_graph)
    plan = commands.add_parser("plan", help="print what calling TARGET would run")
    plan.add_argument("pipeline", metavar="PATH_OR_MODULE[:ATTR]")
    plan.add_argument("target", metavar="TARGET", help="a resource or step name")
    plan.add_argument("resources", nargs="*", metavar="name=value", help="supplied resources")
    plan.set_defaults(run=_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, PipelineError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0
