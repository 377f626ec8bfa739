"""Pipeline: the registry of steps, its provider map and its store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, overload

from reactivex import Observable, abc
from reactivex.subject import AsyncSubject

from ._activation import Activation, activate, failure_chain, release
from ._events import Events, StepEvent
from ._executors import Executor, check_executor
from ._graph import Plan, make_plan, to_dot, to_mermaid
from ._join import Join
from ._live import LiveStore
from ._rx import compute, feed, observe
from ._scope import Scope
from ._step import Provides, Step
from ._store import Store, is_present
from ._threads import run_on_loop
from .exceptions import DuplicateProviderError, PipelineError

__all__ = ["Pipeline", "StepDecorator"]

R = TypeVar("R")

logger = logging.getLogger("pipeliner_rx")


class StepDecorator(Protocol):
    """What ``step(provides=...)`` returns: turns a function into a `Step`."""

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def __call__(self, fn: Callable[..., R], /) -> Step[R]: ...


class Pipeline:
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
        self.executor: Executor = executor
        self._steps: dict[tuple[str, str], Step[Any]] = {}
        self._providers: dict[str, Step[Any]] = {}
        self._environment: dict[str, Any] = {}
        self._store = Store()
        self._events = Events()
        # The current scope's store, per pipeline; it follows asyncio tasks like any ContextVar.
        self._scope_var: ContextVar[Store | None] = ContextVar("pipeliner_rx_scope", default=None)

    def __repr__(self) -> str:
        return f"<Pipeline steps={len(self._steps)}>"

    @property
    def steps(self) -> tuple[Step[Any], ...]:
        """The registered steps, in registration order."""
        return tuple(self._steps.values())

    # -- registration -------------------------------------------------------------------------

    @overload
    def step(self, provides: Callable[..., Coroutine[Any, Any, R]], /) -> Step[R]: ...
    @overload
    def step(
        self,
        provides: Provides = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        executor: Executor = None,
    ) -> StepDecorator: ...

    def step(
        self,
        provides: Provides | Callable[..., Any] = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        executor: Executor = None,
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
            return self._register(Step(provides, None, self))

        def decorator(fn: Callable[..., Any], /) -> Step[Any]:
            return self._register(
                Step(
                    fn,
                    provides,
                    self,
                    timeout=timeout,
                    retries=retries,
                    retry_delay=retry_delay,
                    executor=executor,
                )
            )

        return decorator

    def _register(self, step: Step[Any]) -> Step[Any]:
        old = self._steps.get(step.key)
        for name in step.provides:
            existing = self._providers.get(name)
            if existing is not None and existing is not old:
                raise DuplicateProviderError(name, step.name, existing.name)
        if old is not None:
            # Same module and qualified name: a re-run definition replaces the earlier one.
            for name in old.provides:
                del self._providers[name]
            del self._steps[step.key]
        self._steps[step.key] = step
        for name in step.provides:
            self._providers[name] = step
        return step

    # -- resources ----------------------------------------------------------------------------

    def _current_store(self) -> Store:
        return self._scope_var.get() or self._store

    def _push(self, store: Store, resources: dict[str, Any]) -> None:
        # From another thread, the push is handed to the loop's thread (store state is only
        # ever changed there) and this call returns once it is done, raising what it raised.
        run_on_loop(store.loop, lambda: store.push(resources))

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
        store = self._current_store()
        self._push(store, resources)
        if store is self._store:
            self._environment.update(resources)

    def resource_ready(self, name: str) -> bool:
        """Whether the resource ``name`` holds a value in the current store."""
        return self._current_store().present(name)

    async def resource(self, name: str) -> Any:
        """Return the value of a resource, computing it if needed.

        A missing resource demands its provider (and what that needs, transitively); a resource
        that nothing provides is awaited until someone pushes it with
        `add_environment_resources`.

        Args:
            name: the resource.

        Returns:
            Its value.

        Raises:
            CycleError: the providers of ``name`` depend on it.
            Exception: whatever a step on the way raised, with its original type.
        """
        return await self._resource(self._current_store(), name)

    async def _resource(self, store: Store, name: str, strict: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        store.bind(loop)
        subject = store.subject(name)
        if is_present(subject):
            return subject.value
        hint = (
            "Include the missing resources in each item (or in the scope's arguments)."
            if strict
            else None
        )
        demands = activate(store, self._providers, names=(name,), strict=strict, hint=hint)
        values = await _wait(loop, demands, [subject], f"`{name}`")
        return values[0]

    def reset(self) -> None:
        """Empty the store: cancel running steps and drop every value. Steps stay registered.

        Whoever still awaits a missing resource fails with `PipelineError`.
        """
        self._environment.clear()
        self._store.clear(
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
        return Scope(self, resources)

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
            steps=self._steps.values(),
            providers=self._providers,
            environment={**self._environment, **inputs},
            events=self._events,
            executor=self.executor,
        )

    def observe(self, name: str) -> Observable[Any]:
        """An Observable that emits resource ``name`` once and completes.

        It is lazy: subscribing demands the provider chain of the current store (the scope the
        call is made in); inputs that nothing provides are awaited until they are pushed. It
        errors with the exception of a failed step. Disposing the subscription before the value
        arrives withdraws the demand, which cancels steps nobody else needs. Emissions happen on
        the event loop. ``await pipeline.observe(name)`` gives the value.

        Args:
            name: the resource.

        Returns:
            A cold Observable of the resource's value.

        Example:
            >>> pipeline.observe("result").pipe(ops.map(str)).subscribe(print)
        """
        return observe(self, self._current_store(), name)

    def feed(self, name: str, observable: Observable[Any]) -> abc.DisposableBase:
        """Make the first item of ``observable`` the resource ``name`` of the current store.

        Later items are ignored; an error of ``observable`` before its first item fails the
        resource (its waiters get the error; a later push or feed can still set it). Items may
        arrive on any thread: they are handed to the event loop's thread.

        Args:
            name: the resource.
            observable: the source of its value.

        Returns:
            A disposable that stops listening to ``observable``.

        Example:
            >>> pipeline.feed("divisor", clicks.pipe(ops.map(lambda e: e.value)))
        """
        return feed(self._current_store(), name, observable)

    def compute(
        self, *targets: str | Step[Any], max_concurrency: int | None = None
    ) -> Callable[[Observable[Mapping[str, Any]]], Observable[Any]]:
        """An Rx operator computing ``targets`` for each item of a stream of inputs.

        Each item is a mapping of resource names to values. For each, a fresh scope seeded with
        it computes the targets (resource names or steps), and the operator emits the value, or
        a tuple for several targets. Results come out in input order; at most
        ``max_concurrency`` items are in flight (started and not yet emitted). A failing item
        ends the stream with ``on_error`` (the Rx convention); to keep a stream alive past bad
        items, compute each item in its own inner stream and catch there, e.g.
        ``ops.concat_map(lambda item: reactivex.just(item).pipe(op, ops.catch(...)))``.

        Args:
            *targets: resource names or steps to compute per item.
            max_concurrency: the most items in flight at once; None for no limit.

        Returns:
            An operator for ``source.pipe(...)``.

        Raises:
            TypeError: no targets.
            ValueError: ``max_concurrency`` is not a whole number >= 1.

        Example:
            >>> reactivex.from_iterable([{"x": 1}, {"x": 2}]).pipe(pipeline.compute("double"))
        """
        return compute(self, targets, max_concurrency)

    @property
    def events(self) -> Observable[StepEvent]:
        """An Observable of `StepEvent`: each step started, succeeded, failed, skipped, cancelled.

        Events come from every store of the pipeline (``StepEvent.scope`` tells which). Without
        subscribers no event is even built.
        """
        return self._events.observable

    # -- looking at the pipeline --------------------------------------------------------------

    def to_mermaid(self, targets: Iterable[str | Step[Any]] | None = None) -> str:
        """The pipeline as a Mermaid ``flowchart``.

        Steps are boxes and resources rounded nodes, with edges resource -> step -> resource.
        Resources nothing provides (inputs) are marked *input*, those already present in the
        current store *present*.

        Args:
            targets: draw only what these resources or steps need (None: everything).

        Returns:
            Mermaid source, e.g. for a Markdown ``mermaid`` block.
        """
        return to_mermaid(
            self._steps.values(), self._providers, self._current_store(), _names(targets)
        )

    def to_dot(self, targets: Iterable[str | Step[Any]] | None = None) -> str:
        """The pipeline as a Graphviz ``digraph``, valid input for ``dot``.

        Steps are boxes, resources ellipses; inputs are dashed and marked *input*, resources
        present in the current store are green, double-bordered and marked *present*.

        Args:
            targets: draw only what these resources or steps need (None: everything).

        Returns:
            DOT source; render it with ``dot -Tsvg``.
        """
        return to_dot(self._steps.values(), self._providers, self._current_store(), _names(targets))

    def plan(self, target: str | Step[Any], **resources: Any) -> Plan:
        """What calling ``target`` would run, worked out without running or storing anything.

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
        return make_plan(
            target, self._steps.values(), self._providers, self._current_store(), resources
        )

    # -- calling ------------------------------------------------------------------------------

    async def _call(self, step: Step[Any], resources: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        store = self._current_store()
        store.bind(loop)
        if resources:
            store.push(resources)
        provides = step.provides
        sources: Sequence[AsyncSubject[Any]]
        if provides:
            sources = [store.subject(name) for name in provides]
            if all(is_present(subject) for subject in sources):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("skip %s: its outputs are present", step.name)
                if self._events.observers:
                    self._events.emit(StepEvent(step.name, "skipped", scope=store.id))
                values = [subject.value for subject in sources]
                return values[0] if len(values) == 1 else tuple(values)
        demands = activate(store, self._providers, step=step, strict=True)
        if not provides:
            sources = demands[0].outputs  # the private result of a step that provides nothing
        values = await _wait(loop, demands, sources, f"`{step.name}`")
        return values[0] if len(values) == 1 else tuple(values)


async def _wait(
    loop: asyncio.AbstractEventLoop,
    demands: list[Activation],
    sources: Sequence[AsyncSubject[Any]],
    what: str,
) -> list[Any]:
    """Await the first value of each source; withdraw ``demands`` if the caller goes away."""
    if all(is_present(source) for source in sources):
        # Already there (computed before, or supplied): no future, no subscription.
        release(demands)
        return [source.value for source in sources]
    future: asyncio.Future[list[Any]] = loop.create_future()

    def ready(values: list[Any]) -> None:
        if not future.done():
            future.set_result(values)

    def failed(error: Exception, index: int) -> None:
        if not future.done():
            future.set_exception(error)

    join = Join(sources, ready, failed)
    try:
        values = await future
    except asyncio.CancelledError:
        join.dispose()
        release(demands)
        raise
    except Exception as exc:
        if demands:
            chain = failure_chain(demands[0])
            if len(chain) > 1:
                note = f"{what} could not be computed: {' -> '.join(chain)}."
                if note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
        raise
    # Providers still pending although the values arrived (pushed meanwhile) are not needed.
    release(demands)
    return values


def _names(targets: Iterable[str | Step[Any]] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, (str, Step)):
        targets = [targets]
    return [t if isinstance(t, str) else t.name for t in targets]
