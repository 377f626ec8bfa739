"""Running plain ``def`` steps off the event loop: thread and process pools, or Dask.

A sync step never runs on the loop's thread. It is handed to a `concurrent.futures.Executor`
(the loop's default thread pool unless one is configured) or to a ``distributed.Client``, and
awaited without blocking the loop. Dask is used only if the caller passes a client: importing
this module never imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import importlib
import inspect
import pickle
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from .exceptions import StepPicklingError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["DaskClient", "Executor", "StepCall", "StepExecutor", "check_executor", "run_sync"]


class DaskClient(Protocol):
    """What pipeliner_rx uses of a ``distributed.Client`` (named structurally: dask is optional)."""

    @property
    def asynchronous(self) -> bool:
        """Whether the client runs on the caller's event loop."""
        ...

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Schedule ``func(*args, **kwargs)`` on the cluster; return its future."""
        ...


StepExecutor: TypeAlias = concurrent.futures.Executor | DaskClient
"""Where plain ``def`` steps run: a `concurrent.futures.Executor` (thread or process pool, or
anything implementing it) or a ``distributed.Client``."""

# An executor, or None for the loop's default thread pool.
Executor: TypeAlias = StepExecutor | None


# Tasks nobody awaits are kept referenced until done, as asyncio requires.
_background: set[asyncio.Future[Any]] = set()


def _dask_client_type() -> type[Any] | None:
    distributed = sys.modules.get("distributed")
    return getattr(distributed, "Client", None) if distributed is not None else None


def _is_dask_client(executor: object) -> bool:
    client_type = _dask_client_type()
    return client_type is not None and isinstance(executor, client_type)


def check_executor(executor: object, where: str) -> None:
    """Raise `TypeError` unless ``executor`` is None, an Executor or a Dask client."""
    if executor is None or isinstance(executor, concurrent.futures.Executor):
        return
    if _is_dask_client(executor):
        return
    raise TypeError(
        f"`executor` of {where} must be a `concurrent.futures.Executor` (a thread or process "
        f"pool, or anything implementing it) or a `distributed.Client`; got "
        f"{type(executor).__name__}."
    )


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    """Call a sync step's function, wherever it runs."""
    try:
        return fn(**kwargs)
    except StopIteration as exc:
        # A Future cannot hold StopIteration (asyncio refuses it and its waiter would hang):
        # it leaves the worker as a RuntimeError naming the step.
        name = getattr(fn, "__name__", None) or repr(fn)
        raise RuntimeError(
            f"`{name}` raised StopIteration, which asyncio cannot deliver to a waiter; it is "
            f"raised as this RuntimeError instead (see its __cause__)."
        ) from exc


def _call_by_reference(module: str, qualname: str, kwargs: dict[str, Any]) -> Any:
    """Run in a worker: import the step's module (registering its steps: harmless) and call."""
    obj = _resolve(module, qualname)
    fn = getattr(obj, "fn", obj)  # the module attribute is the Step; its function is `.fn`
    return _call(fn, kwargs)


def _call_function(fn: Any, kwargs: dict[str, Any]) -> Any:
    return _call(fn, kwargs)


class StepCall:
    """One call of a sync step, as handed to an executor.

    In-process executors just call it. Executors that pickle it (process pools, Dask) get a
    reference to the step's module and qualified name, since plain pickle refuses the function
    itself (its module attribute is the `Step`). A step that cannot be found by reference (one
    defined inside a function) is sent as its function, which cloudpickle (Dask) can ship by
    value and plain pickle refuses.
    """

    __slots__ = ("kwargs", "step")

    def __init__(self, step: Step[Any], kwargs: dict[str, Any]) -> None:
        self.step = step
        self.kwargs = kwargs

    def __call__(self) -> Any:
        return _call(self.step.fn, self.kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        module, qualname = self.step.key
        if "<locals>" not in qualname:
            try:
                found = _resolve(module, qualname)
            except Exception:  # not importable here either: fall through to shipping by value
                found = None
            if found is self.step or found is self.step.fn:
                return (functools.partial, (_call_by_reference, module, qualname, self.kwargs))
        return (functools.partial, (_call_function, self.step.fn, self.kwargs))


def _shipping_error(
    step: Step[Any], error: BaseException, argument: str | None = None
) -> StepPicklingError:
    module, qualname = step.key
    reason = f"{type(error).__name__}: {error}"
    return StepPicklingError(step.name, f"{module}.{qualname}", reason, argument)


def _in_process(executor: Executor) -> bool:
    """Whether ``executor`` runs calls in this process (so a context can go along)."""
    if executor is None or isinstance(executor, concurrent.futures.ThreadPoolExecutor):
        return True
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor) or _is_dask_client(executor):
        return False
    # Another `concurrent.futures.Executor`: in-process unless it ships calls by pickle
    # (an InterpreterPoolExecutor, a process pool of another library).
    interpreters = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
    return interpreters is None or not isinstance(executor, interpreters)


def _check_picklable(call: StepCall) -> None:
    """Raise `StepPicklingError` naming the step, or the argument, that cannot be pickled."""
    try:
        pickle.dumps(call)
    except Exception as exc:
        for name, value in call.kwargs.items():
            try:
                pickle.dumps(value)
            except Exception as arg_exc:
                raise _shipping_error(call.step, arg_exc, name) from arg_exc
        raise _shipping_error(call.step, exc) from exc


async def run_sync(step: Step[Any], kwargs: dict[str, Any], executor: Executor) -> Any:
    """Run the sync step on ``executor`` (None: the loop's default pool) and await its result."""
    loop = asyncio.get_running_loop()
    call = StepCall(step, kwargs)
    if _in_process(executor):
        # In-process: keep the caller's context (its scope), as `asyncio.to_thread` does.
        pool = cast(concurrent.futures.Executor | None, executor)
        return await loop.run_in_executor(pool, contextvars.copy_context().run, call)
    if _is_dask_client(executor):
        return await _run_on_dask(executor, call)
    # Fail here, naming the step or argument, rather than deep in the pool's feeder thread.
    _check_picklable(call)
    # Not a Dask client, so an Executor (checked when it was configured).
    return await loop.run_in_executor(cast(concurrent.futures.Executor, executor), call)


async def _run_on_dask(client: Any, call: StepCall) -> Any:
    try:
        future = client.submit(call, pure=False, key=f"{call.step.name}-{id(call):x}")
    except Exception as exc:
        if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)):
            # Dask pickles with cloudpickle (present wherever distributed is).
            dumps = getattr(sys.modules.get("cloudpickle"), "dumps", pickle.dumps)
            for name, value in call.kwargs.items():
                try:
                    dumps(value)
                except Exception:
                    raise _shipping_error(call.step, exc, name) from exc
            raise _shipping_error(call.step, exc) from exc
        raise
    try:
        if client.asynchronous:
            return await future
        # A synchronous client runs its own loop thread: hear back from it without blocking.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        def finished(_: Any) -> None:
            loop.call_soon_threadsafe(wake)

        future.add_done_callback(finished)
        await done
        if future.status == "error":
            raise future.exception()
        return future.result()
    except asyncio.CancelledError:
        cancelled = future.cancel()
        if inspect.isawaitable(cancelled):  # an asynchronous client's cancel is a coroutine
            _background.add(task := asyncio.ensure_future(cancelled))
            task.add_done_callback(_background.discard)
        raise
