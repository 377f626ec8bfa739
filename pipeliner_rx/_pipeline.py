"""Pipeline: the registry of steps, its provider map and its store."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol, TypeVar, overload

from ._engine import Engine
from ._executors import Executor, check_executor
from ._graph import mimebundle, to_dot, to_mermaid
from ._live import LiveStore
from ._pipeline_streams import PipelineStreams
from ._plans import Plan, resolve
from ._rx import check_name
from ._scope import Scope
from ._step import Provides, Step
from .exceptions import PipelineError

__all__ = ["Pipeline", "StepDecorator"]

R = TypeVar("R")


class StepDecorator(Protocol):
    """What ``step(provides=...)`` returns: turns a function into a `Step`."""

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def __call__(self, fn: Callable[..., R], /) -> Step[R]: ...


class Pipeline(PipelineStreams):
    """A registry of steps and the store of resources they compute.

    Register steps with `step`; call a step to compute it. Every resource of the store is a
    ``reactivex`` ``AsyncSubject``; a call activates only the providers of what is missing, each
    at most once per store, and runs them concurrently where they are independent.

    Args:
        executor: where plain ``def`` steps run unless a step names its own: any
            `concurrent.futures.Executor` (thread or process pool) or a ``distributed.Client``.
            None: the event loop's default thread pool.

    Example:
        >>> pipeline = Pipeline()
        >>> @pipeline.step(provides="double")
        ... async def twice(x):
        ...     return 2 * x
        >>> asyncio.run(twice(x=21))
        42
    """

    def __init__(self, executor: Executor = None) -> None:
        check_executor(executor, "`Pipeline`")
        self._engine = Engine(executor)

    @property
    def executor(self) -> Executor:
        """Where plain ``def`` steps run unless a step names its own (see the class docstring)."""
        return self._engine.executor

    @executor.setter
    def executor(self, executor: Executor) -> None:
        check_executor(executor, "`Pipeline`")
        self._engine.executor = executor

    def __repr__(self) -> str:
        return f"<Pipeline steps={len(self._engine.steps)}>"

    @property
    def steps(self) -> tuple[Step[Any], ...]:
        """The registered steps, in registration order."""
        return tuple(self._engine.steps)

    # -- registration -------------------------------------------------------------------------

    @overload
    def step(self, provides: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def step(self, provides: Callable[..., R], /) -> Step[R]: ...
    @overload
    def step(
        self,
        provides: Provides = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        executor: Executor = None,
        shared: bool = False,
    ) -> StepDecorator: ...

    def step(
        self,
        provides: Provides | Callable[..., Any] = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        executor: Executor = None,
        shared: bool = False,
    ) -> Step[Any] | StepDecorator:
        """Register a function as a step of this pipeline.

        Each parameter name of the function is a resource it needs; ``provides`` names the
        resources its return value becomes. ``@step`` with no arguments registers a step that
        provides nothing. The returned `Step` keeps the function's name, docstring, signature
        and ``__wrapped__``; calling it returns a coroutine computing the step.

        Args:
            provides: a resource name, a tuple or list of names (the function then returns a
                tuple or list of as many values), or None or empty for no outputs.
            timeout: seconds one attempt may run; past it the attempt fails with
                `TimeoutError`. None for no limit.
            retries: how many more times to run the step after an attempt raises (not after
                cancellation); the step fails with the last attempt's error.
            retry_delay: seconds to wait before each retry.
            executor: where this step runs if it is a plain ``def`` function, overriding the
                pipeline's: a `concurrent.futures.Executor` or a ``distributed.Client``.
            shared: compute the outputs at most once, in the pipeline's own store, and let
                every scope read them from there (a model, a client, a connection pool). A
                shared step may need only resources of the pipeline's own store: its
                environment and other shared steps.

        Returns:
            A decorator registering the function and returning its `Step`.

        Raises:
            TypeError: ``provides`` is malformed, or the function takes ``*args``,
                ``**kwargs`` or positional-only parameters.
            TypeError: ``executor`` is neither an Executor nor a Dask client.
            ValueError: ``timeout``, ``retries`` or ``retry_delay`` is out of range.
            DuplicateProviderError: another step already provides one of the resources.

        Example:
            >>> @pipeline.step(provides=("low", "high"))
            ... async def bounds(values):
            ...     return min(values), max(values)
        """
        if callable(provides):
            return self._engine.register(Step(provides, None, self, self._engine))

        def decorator(fn: Callable[..., Any], /) -> Step[Any]:
            return self._engine.register(
                Step(
                    fn,
                    provides,
                    self,
                    self._engine,
                    timeout=timeout,
                    retries=retries,
                    retry_delay=retry_delay,
                    executor=executor,
                    shared=shared,
                )
            )

        return decorator

    # -- resources ----------------------------------------------------------------------------

    def add_environment_resources(self, **resources: Any) -> None:
        """Set resources of the current store, waking everything that waits on them.

        A present resource suppresses its provider. Outside any scope the values also become
        the pipeline's environment, which every new `scope` starts with; inside a scope they
        are the scope's alone.

        It may be called from any thread: from a thread other than the event loop's it hands
        the values to the loop's thread and returns once they are set there.

        Args:
            **resources: resource names and their values.

        Raises:
            ResourceConflictError: a resource already holds a different value; nothing is set.
        """
        engine = self._engine
        store = engine.current_store()
        engine.push(store, resources)
        if store is engine.store:
            engine.environment.update(resources)

    def resource_ready(self, name: str) -> bool:
        """Whether the resource ``name`` holds a value in the current store."""
        check_name(name)
        return self._engine.current_store().present(name)

    async def resource(self, name: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (a documented bound)
        """Return the value of a resource, computing it if needed.

        A missing resource demands its provider (and what that needs, transitively); a resource
        that nothing provides is awaited until someone pushes it with
        `add_environment_resources`, for at most ``timeout`` seconds.

        Args:
            name: the resource.
            timeout: seconds to wait at most; None to wait as long as it takes.

        Returns:
            Its value.

        Raises:
            TimeoutError: ``timeout`` expired first; the demand is withdrawn (providers nobody
                else needs are cancelled).
            CycleError: the providers of ``name`` depend on it.
            Exception: whatever a step on the way raised, with its original type.

        Example:
            >>> token = await pipeline.resource("token", timeout=5)
        """
        engine = self._engine
        return await engine.resource(engine.current_store(), name, timeout=timeout)

    def reset(self) -> None:
        """Empty the store: cancel running steps and drop every value. Steps stay registered.

        Whoever still awaits a missing resource fails with `PipelineError`.
        """
        self._engine.environment.clear()
        self._engine.store.clear(
            lambda: PipelineError(
                "The store was reset while this resource was awaited; call again."
            )
        )

    # -- scopes and streams -------------------------------------------------------------------

    def scope(self, **resources: Any) -> Scope:
        """A new `Scope`: a private store seeded with the environment and ``resources``.

        Args:
            **resources: values of the scope, overriding the pipeline's environment.

        Returns:
            The scope; enter it with ``with`` or ``async with``.

        Example:
            >>> async with pipeline.scope(divisor=3):
            ...     base, result, mod = await get_division()
        """
        return Scope(self._engine, self, resources)

    def live(self, **inputs: Any) -> LiveStore:
        """A new `LiveStore`: a store whose inputs change, recomputing only what they affect.

        It starts with the pipeline's environment, overridden by ``inputs``, and is separate
        from the pipeline's store and from scopes. Push new values with ``push``, follow
        results with ``observe`` or ``get``; close it with ``with`` / ``async with``.

        Args:
            **inputs: initial values, overriding the pipeline's environment.

        Returns:
            The live store.

        Example:
            >>> async with pipeline.live(price=10.0) as live:
            ...     live.observe("report").subscribe(print)
            ...     live.push(price=10.5)
        """
        return LiveStore(
            steps=self.steps,
            providers=self._engine.providers,
            environment={**self._engine.environment, **inputs},
            events=self._engine.events,
            executor=self.executor,
        )

    # -- looking at the pipeline --------------------------------------------------------------

    def to_mermaid(self, targets: Step[Any] | Iterable[str | Step[Any]] | None = None) -> str:
        """The pipeline as a Mermaid ``flowchart``.

        Steps are boxes and resources rounded nodes, with edges resource -> step -> resource.
        Resources nothing provides (inputs) are marked *input*, those already present in the
        current store *present*.

        Args:
            targets: draw only what these resources or steps need (None: everything).

        Returns:
            Mermaid source, e.g. for a Markdown ``mermaid`` block.
        """
        engine = self._engine
        return to_mermaid(engine.steps, engine.providers, engine.current_store(), _names(targets))

    def to_dot(self, targets: Step[Any] | Iterable[str | Step[Any]] | None = None) -> str:
        """The pipeline as a Graphviz ``digraph``, valid input for ``dot``.

        Steps are boxes, resources ellipses; inputs are dashed and marked *input*, resources
        present in the current store are green, double-bordered and marked *present*.

        Args:
            targets: draw only what these resources or steps need (None: everything).

        Returns:
            DOT source; render it with ``dot -Tsvg``.
        """
        engine = self._engine
        return to_dot(engine.steps, engine.providers, engine.current_store(), _names(targets))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The pipeline as a graph in Jupyter: ``pipeline`` on a cell's last line draws it.

        SVG (as `to_dot` draws it) when Graphviz's ``dot`` is on PATH, else the `to_mermaid`
        text as a Markdown ``mermaid`` block, which JupyterLab 4.1+ renders.
        """
        return mimebundle(self.to_dot, self.to_mermaid)

    def plan(self, target: str | Step[Any], **resources: Any) -> Plan:
        """What calling ``target`` would run, worked out without running or storing anything.

        The plan is the engine's own: a call compiles its walk once per target and set of
        present resources (in the current store, plus ``resources``) and reuses it until a
        step is registered. This returns that compiled plan, the same object for as long as
        that state holds, so a dry run is exactly what a call would execute.

        Args:
            target: a step, a resource name, or a step name (a resource name wins on a clash).
            **resources: values the call would supply, as keyword arguments of the call.

        Returns:
            A `Plan`: ``runs`` (in dependency order), ``skips``, ``missing``; ``str(plan)``
            explains each.

        Raises:
            CycleError: the target's providers form a cycle.
            PipelineError: ``target`` names nothing in this pipeline.

        Example:
            >>> print(pipeline.plan("get_division", base=38))
        """
        engine = self._engine
        step, names = resolve(target, engine.steps, engine.providers)
        # The compiled plan the engine would execute for this call, in the current store.
        return engine.plans.get(engine.current_store(), step, names, True, resources or None).plan


def _names(targets: Step[Any] | Iterable[str | Step[Any]] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, (str, Step)):
        targets = [targets]
    return [t if isinstance(t, str) else t.name for t in targets]
