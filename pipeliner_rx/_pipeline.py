"""Pipeline: the registry of steps, its provider map and its store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, overload

from reactivex import Observable, abc
from reactivex.subject import AsyncSubject

from ._activation import Activation, release
from ._compute import compute
from ._demand import Listener, activate
from ._events import Events, StepEvent
from ._executors import Executor, check_executor
from ._graph import Plan, make_plan, mimebundle, to_dot, to_mermaid
from ._live import LiveStore
from ._map import Results, Source, map_items
from ._rx import check_name, feed, observe
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
        self._steps: dict[Step[Any], None] = {}  # in registration order
        self._by_key: dict[tuple[str, str], Step[Any]] = {}  # the latest step per definition
        self._namesakes: dict[str, int] = {}  # steps registered per name, for unique labels
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
        return tuple(self._steps)

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
                    shared=shared,
                )
            )

        return decorator

    def _register(self, step: Step[Any]) -> Step[Any]:
        old = self._by_key.get(step.key)
        if old is not None and not step.replaces(old):
            old = None
        for name in step.provides:
            existing = self._providers.get(name)
            if existing is not None and existing is not old:
                raise DuplicateProviderError(name, step.label, existing.label)
        if old is not None:
            # The same definition run again (a notebook cell): it replaces the earlier one.
            for name in old.provides:
                del self._providers[name]
            del self._steps[old]
            step.label = old.label
        else:
            namesakes = self._namesakes.get(step.name, 0)
            if namesakes:
                step.label = f"{step.name}#{namesakes + 1}"
            self._namesakes[step.name] = namesakes + 1
        self._steps[step] = None
        self._by_key[step.key] = step
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
        check_name(name)
        return self._current_store().present(name)

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
        return await self._resource(self._current_store(), name, timeout=timeout)

    async def _resource(
        self,
        store: Store,
        name: str,
        strict: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (a documented bound)
    ) -> Any:
        if timeout is not None:
            if not timeout >= 0:
                raise ValueError(f"`timeout` must be seconds >= 0 or None; got {timeout!r}.")
            try:
                async with asyncio.timeout(timeout) as deadline:
                    return await self._resource(store, name, strict)
            except TimeoutError:
                if deadline.expired():
                    raise TimeoutError(
                        f"`{name}` had no value within {timeout} s. Its demand is withdrawn; "
                        f"check that something provides or pushes `{name}`, or wait longer."
                    ) from None
                raise
        check_name(name)
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
            steps=self.steps,
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
        self,
        *targets: str | Step[Any],
        max_concurrency: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> Callable[[Observable[Any]], Observable[Any]]:
        """An Rx operator computing ``targets`` for each item of a stream of inputs.

        Each item is a mapping of resource names to values. For each, a fresh scope seeded with
        it (and the pipeline's environment) computes the targets, and the operator emits the
        value, or a tuple for several targets. At most ``max_concurrency`` items are in flight
        (started and not yet emitted); further items wait in a queue, since an Rx source cannot
        be slowed down: for back-pressure, iterate with `map` instead.

        - ``ordered=True`` emits results in input order: a slow item holds back the finished
          ones after it. ``ordered=False`` emits each result as soon as it is ready.
        - ``return_exceptions=False``: a failing item ends the stream with ``on_error`` (the
          Rx convention; the results of the items before it in emission order are emitted).
          ``return_exceptions=True`` emits the failing item's exception in its place and goes
          on (the `asyncio.gather` convention). Use it for streams that must survive bad
          items; filter or count the errors downstream.
        - An item whose task is cancelled by anything but the stream fails with
          `PipelineError` (then as any failing item above).

        Subscribing, items and disposal may come on any thread (``concat_map`` or
        ``flat_map`` over a source on a worker thread): the work is handed to the event loop
        the operator was created on, or the running one, or the one the pipeline is bound to.
        Notifications are emitted on that loop's thread.

        Args:
            *targets: resource names or steps to compute per item. A string is a resource a
                step provides, else a step's name, else an input of a step (that the items
                supply).
            max_concurrency: the most items in flight at once; None for no limit.
            ordered: emit in input order (True) or in completion order (False).
            return_exceptions: emit a failing item's exception as its result instead of
                ending the stream.

        Returns:
            An operator for ``source.pipe(...)``.

        Raises:
            TypeError: no targets, a target that is neither a string nor a step, or a step of
                another pipeline.
            UnknownTargetError: a string target names nothing in this pipeline.
            ValueError: ``max_concurrency`` is not a whole number >= 1.
            PipelineError: on subscription (through ``on_error``), when there is no event loop
                to run on.

        Example:
            >>> inputs.pipe(pipeline.compute("double", ordered=False, return_exceptions=True))
        """
        return compute(
            self, self._current_store(), targets, max_concurrency, ordered, return_exceptions
        )

    def map(
        self,
        items: Source,
        *targets: str | Step[Any],
        max_concurrency: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> Results:
        """Compute ``targets`` for each of ``items``, as an async iterator of the results.

        Each item is computed as by `compute`: in a fresh scope seeded with it, the value or a
        tuple for several targets. Items are pulled from ``items`` (an iterable or async
        iterable of mappings) only while fewer than ``max_concurrency`` of them are ahead of
        the consumer (pulled, not yet handed out), so a slow consumer slows the source and an
        endless source is read with bounded memory. A plain iterable is read on the event
        loop: it must not block (wrap a blocking source in an async generator).

        ``ordered`` and ``return_exceptions`` are those of `compute`: with
        ``return_exceptions=False`` the first failing item (in output order) raises its
        exception from the ``async for``, after the results before it. An error of the source
        itself is raised after the results of the items read before it.

        Leaving the ``async for`` early cancels the items in flight (at the loop's next turn);
        ``aclose()``, e.g. through ``contextlib.aclosing``, also waits until they are gone.

        Args:
            items: the inputs, one mapping of resource names to values per item.
            *targets: resource names or steps to compute per item, as for `compute`.
            max_concurrency: the most items ahead of the consumer, and so in flight at once;
                None for 100.
            ordered: results in input order (True) or in completion order (False).
            return_exceptions: give a failing item's exception as its result instead of
                raising it.

        Returns:
            An async iterator (an async generator) of the results.

        Raises:
            TypeError: ``items`` is not an iterable of mappings, or a bad target (see
                `compute`).
            UnknownTargetError: a string target names nothing in this pipeline.
            ValueError: ``max_concurrency`` is not a whole number >= 1.

        Example:
            >>> async for count in pipeline.map(({"text": line} async for line in lines), "count"):
            ...     print(count)
        """
        return map_items(
            self,
            self._current_store(),
            items,
            targets,
            max_concurrency,
            ordered,
            return_exceptions,
        )

    @property
    def events(self) -> Observable[StepEvent]:
        """An Observable of `StepEvent`: each step started, succeeded, failed, skipped, cancelled.

        Events come from every store of the pipeline (``StepEvent.scope`` tells which). Without
        subscribers no event is even built.
        """
        return self._events.observable

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
        return to_mermaid(self._steps, self._providers, self._current_store(), _names(targets))

    def to_dot(self, targets: Step[Any] | Iterable[str | Step[Any]] | None = None) -> str:
        """The pipeline as a Graphviz ``digraph``, valid input for ``dot``.

        Steps are boxes, resources ellipses; inputs are dashed and marked *input*, resources
        present in the current store are green, double-bordered and marked *present*.

        Args:
            targets: draw only what these resources or steps need (None: everything).

        Returns:
            DOT source; render it with ``dot -Tsvg``.
        """
        return to_dot(self._steps, self._providers, self._current_store(), _names(targets))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The pipeline as a graph in Jupyter: ``pipeline`` on a cell's last line draws it.

        SVG (as `to_dot` draws it) when Graphviz's ``dot`` is on PATH, else the `to_mermaid`
        text as a Markdown ``mermaid`` block, which JupyterLab 4.1+ renders.
        """
        return mimebundle(self.to_dot, self.to_mermaid)

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
        return make_plan(target, self._steps, self._providers, self._current_store(), resources)

    # -- calling ------------------------------------------------------------------------------

    async def _call(self, step: Step[Any], resources: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        store = self._current_store()
        store.bind(loop)
        if resources:
            store.check(resources)  # a conflict rejects the call before anything changes
        provides = step.provides
        sources: Sequence[AsyncSubject[Any]]
        if provides:
            sources = [store.subject(name) for name in provides]
            if all(is_present(subject) for subject in sources):
                if resources:
                    store.push(resources)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("skip %s: its outputs are present", step.label)
                if self._events.observers:
                    self._events.emit(StepEvent(step.label, "skipped", scope=store.id))
                values = [subject.value for subject in sources]
                return values[0] if len(values) == 1 else tuple(values)
        if step.shared and store.root is not None:
            # Read from the pipeline's store, where it runs once for every scope.
            demands = activate(
                store, self._providers, names=provides, strict=True, supplied=resources or None
            )
        else:
            demands = activate(
                store, self._providers, step=step, strict=True, supplied=resources or None
            )
        if not provides:
            sources = demands[0].outputs  # the private result of a step that provides nothing
        values = await _wait(loop, demands, sources, f"`{step.label}`")
        return values[0] if len(values) == 1 else tuple(values)


async def _wait(
    loop: asyncio.AbstractEventLoop,
    demands: list[Activation],
    sources: Sequence[AsyncSubject[Any]],
    what: str,
) -> list[Any]:
    """Await the first value of each source; withdraw ``demands`` however the wait ends."""
    if all(is_present(source) for source in sources):
        # Already there (computed before, or supplied): no future, no subscription.
        release(demands)
        return [source.value for source in sources]
    future: asyncio.Future[list[Any]] = loop.create_future()

    def ready(values: list[Any]) -> None:
        if not future.done():
            future.set_result(values)

    def failed(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    listener = Listener(demands, sources, what, ready, failed)
    try:
        return await future
    finally:
        listener.withdraw()  # the caller went away first (cancelled, timed out)


def _names(targets: Step[Any] | Iterable[str | Step[Any]] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, (str, Step)):
        targets = [targets]
    return [t if isinstance(t, str) else t.name for t in targets]
