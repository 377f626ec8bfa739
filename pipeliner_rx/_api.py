"""Module-level ``step``, ``resource``, ... bound to a default `Pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from ._executors import Executor
from ._live import LiveStore
from ._pipeline import Pipeline, StepDecorator
from ._scope import Scope
from ._step import Provides, Step

__all__ = [
    "add_environment_resources",
    "default_pipeline",
    "live",
    "resource",
    "resource_ready",
    "scope",
    "step",
]

R = TypeVar("R")

_default = Pipeline()


def default_pipeline() -> Pipeline:
    """The pipeline that the module-level functions (`step`, `resource`, ...) act on."""
    return _default


@overload
def step(provides: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
@overload
def step(provides: Callable[..., R], /) -> Step[R]: ...
@overload
def step(
    provides: Provides = None,
    *,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    executor: Executor = None,
    shared: bool = False,
) -> StepDecorator: ...


def step(
    provides: Provides | Callable[..., Any] = None,
    *,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    executor: Executor = None,
    shared: bool = False,
) -> Step[Any] | StepDecorator:
    """Register a function as a step of the default pipeline; see `Pipeline.step`.

    Example:
        >>> @step(provides="result")
        ... async def divide(base, divisor):
        ...     return base // divisor
    """
    if callable(provides):
        return _default.step(provides)
    return _default.step(
        provides,
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        executor=executor,
        shared=shared,
    )


def add_environment_resources(**resources: Any) -> None:
    """Set resources of the default pipeline; see `Pipeline.add_environment_resources`."""
    _default.add_environment_resources(**resources)


async def resource(name: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (a documented bound)
    """Return a resource of the default pipeline, computing it if needed (`Pipeline.resource`)."""
    return await _default.resource(name, timeout=timeout)


def resource_ready(name: str) -> bool:
    """Whether a resource of the default pipeline holds a value."""
    return _default.resource_ready(name)


def live(**inputs: Any) -> LiveStore:
    """A new live store of the default pipeline; see `Pipeline.live`."""
    return _default.live(**inputs)


def scope(**resources: Any) -> Scope:
    """A new scope of the default pipeline; see `Pipeline.scope`."""
    return _default.scope(**resources)
