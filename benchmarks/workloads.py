"""Workload graphs, defined once and built for each engine under test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

StepFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class StepSpec:
    """One step: its name, the resources it needs, what it provides, and its coroutine."""

    name: str
    needs: tuple[str, ...]
    provides: tuple[str, ...]
    fn: StepFn


@dataclass(frozen=True)
class Workload:
    """A graph, the step to call, the inputs supplied per run, and how to report it."""

    name: str
    steps: list[StepSpec]
    target: str  # a step name
    inputs: dict[str, Any] = field(default_factory=dict)
    extra_targets: tuple[str, ...] = ()  # more steps called in the same run (W1b)
    unit: str = "runs/s"  # or "us/step" or "s"
    size: int = 1  # steps per run, for us/step


def seed(with_resmod: bool = False) -> Workload:
    """W1/W1b: the seed pipeline, `get_division` with base=38, divisor=3 supplied."""

    async def base_provider() -> int:
        return 23

    async def divide(base: int, divisor: int) -> int:
        return base // divisor

    async def mod(base: int, divisor: int) -> int:
        return base % divisor

    async def get_resmod(result: int, modulus: int) -> tuple[int, int]:
        return result * modulus, result - modulus

    async def get_division(base: int, result: int, modulus: int) -> tuple[int, int, int]:
        return base, result, modulus

    steps = [
        StepSpec("base_provider", (), ("base",), base_provider),
        StepSpec("divide", ("base", "divisor"), ("result",), divide),
        StepSpec("mod", ("base", "divisor"), ("modulus",), mod),
        StepSpec(
            "get_resmod", ("result", "modulus"), ("res_times_mod", "res_minus_mod"), get_resmod
        ),
        StepSpec("get_division", ("base", "result", "modulus"), (), get_division),
    ]
    return Workload(
        "W1b: seed + res_times_mod, res_minus_mod" if with_resmod else "W1: seed pipeline",
        steps,
        "get_division",
        {"base": 38, "divisor": 3},
        extra_targets=("get_resmod",) if with_resmod else (),
    )


def chain(n: int) -> Workload:
    """W2: a chain of n trivial steps."""

    async def first() -> int:
        return 0

    async def step(**kw: int) -> int:
        for value in kw.values():
            return value + 1
        return 0

    steps = [StepSpec("s0", (), ("r0",), first)]
    steps += [StepSpec(f"s{i}", (f"r{i - 1}",), (f"r{i}",), step) for i in range(1, n)]
    return Workload(f"W2: chain of {n:,} steps", steps, f"s{n - 1}", unit="us/step", size=n)


def fan(n: int) -> Workload:
    """W3: n independent trivial steps joined by one."""

    async def leaf() -> int:
        return 1

    async def join(**kw: int) -> int:
        return len(kw)

    steps = [StepSpec(f"leaf{i}", (), (f"r{i}",), leaf) for i in range(n)]
    steps.append(StepSpec("join", tuple(f"r{i}" for i in range(n)), ("joined",), join))
    return Workload(
        f"W3: {n:,} independent steps into one", steps, "join", unit="us/step", size=n + 1
    )


def sleeps(n: int = 200, seconds: float = 0.02) -> Workload:
    """W4: n independent sleeps joined by one; the ideal wall time is one sleep."""

    async def nap() -> int:
        await asyncio.sleep(seconds)
        return 1

    async def join(**kw: int) -> int:
        return len(kw)

    steps = [StepSpec(f"nap{i}", (), (f"r{i}",), nap) for i in range(n)]
    steps.append(StepSpec("join", tuple(f"r{i}" for i in range(n)), ("joined",), join))
    return Workload(
        f"W4: {n} independent {seconds * 1000:.0f} ms sleeps into one", steps, "join", unit="s"
    )
