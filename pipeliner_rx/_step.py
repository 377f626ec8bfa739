"""Step: a registered function, its outputs and the resources its parameters name."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._executors import check_executor

if TYPE_CHECKING:
    from ._engine import Engine
    from ._pipeline import Pipeline

__all__ = ["Param", "Provides", "Step", "parse_provides"]

R = TypeVar("R")

Provides = str | Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a step: the resource it names and its default, if any."""

    name: str
    has_default: bool
    default: Any


def parse_provides(provides: Provides, where: str) -> tuple[str, ...]:
    """Normalise ``provides`` to a tuple of names, raising `TypeError` when it is malformed."""
    if provides is None or provides == "":
        return ()
    if isinstance(provides, str):
        names: tuple[object, ...] = (provides,)
    elif isinstance(provides, (tuple, list)):
        names = tuple(provides)
    else:
        raise TypeError(
            f"`provides` of `{where}` must be a string, a tuple or list of strings, or None; "
            f"got {type(provides).__name__}."
        )
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"`provides` of `{where}` must hold non-empty strings; got {name!r}.")
    if len(set(names)) != len(names):
        raise TypeError(f"`provides` of `{where}` names a resource twice: {names!r}.")
    return names  # type: ignore[return-value]  # checked above: all str


def _plain_params(fn: Callable[..., Any]) -> tuple[Param, ...] | None:
    """Read the parameters of a plain function from its code object, or None to ask inspect.

    `inspect.signature` is most of the cost of registering a step; a plain ``def`` with only
    named parameters (the usual step) needs none of its generality.
    """
    if type(fn) is not types.FunctionType:
        return None
    if "__signature__" in fn.__dict__ or "__wrapped__" in fn.__dict__:
        return None
    code = fn.__code__
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_posonlyargcount:
        return None  # an error: inspect's names make the better message
    count = code.co_argcount
    names = code.co_varnames[: count + code.co_kwonlyargcount]
    defaults = fn.__defaults__ or ()
    kwdefaults = fn.__kwdefaults__ or {}
    first_default = count - len(defaults)
    params = []
    for index, name in enumerate(names):
        if index < count:
            has_default = index >= first_default
            default = defaults[index - first_default] if has_default else None
        else:
            has_default = name in kwdefaults
            default = kwdefaults.get(name)
        params.append(Param(name, has_default, default))
    return tuple(params)


def _parse_params(fn: Callable[..., Any], where: str) -> tuple[Param, ...]:
    plain = _plain_params(fn)
    if plain is not None:
        return plain
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"`{where}` takes `{p}`; a step's parameters must be named, since each name is "
                f"the resource it needs. List the resources as parameters."
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(
                f"`{where}` takes `{p.name}` as positional-only; a step receives its resources "
                f"by keyword. Remove the `/` from its signature."
            )
        has_default = p.default is not p.empty
        params.append(Param(p.name, has_default, p.default if has_default else None))
    return tuple(params)


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    inner = fn.func if isinstance(fn, functools.partial) else type(fn)
    return str(getattr(inner, "__name__", type(fn).__name__))


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """An async step that `inspect.iscoroutinefunction` does not recognise as one."""
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    unwrapped = inspect.unwrap(target)
    if unwrapped is not target and inspect.iscoroutinefunction(unwrapped):
        return True  # a ``functools.wraps`` decorator around an ``async def``
    if not isinstance(target, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        # Looked up on the type, as Python does for calls.
        return any(
            inspect.iscoroutinefunction(vars(k).get("__call__")) for k in type(target).__mro__
        )
    return False


class Step(Generic[R]):
    """A function registered on a `Pipeline`, called to compute its result.

    Calling a step returns a coroutine: its keyword arguments become resources of the current
    store, the providers of whatever else it needs run (each once, concurrently where
    independent), and the step's result is returned. See `Pipeline.step`.

    Attributes:
        provides: the names of the resources the step provides (may be empty).
        params: the resources its parameters need, in signature order.
        is_async: whether the function is async (an ``async def``, an object with an
            ``async def __call__``, or a partial or decorated ``async def``); otherwise it is
            a plain function that runs on an executor.
        label: how events, plans and graphs name the step: its name, with ``#2``, ``#3``, ...
            added when another step of the pipeline already has that name.
        pipeline: the pipeline it is registered on.
        timeout: seconds an attempt may run before it fails with `TimeoutError`, or None.
        retries: how many more times a failed attempt is re-run before the step fails.
        retry_delay: seconds to wait between attempts.
        executor: where a plain ``def`` step runs (None: the pipeline's executor, else the
            loop's default thread pool).
        shared: whether its outputs are computed once in the pipeline's own store and read
            from there by every scope.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        provides: Provides,
        pipeline: Pipeline,
        engine: Engine,
        *,
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        executor: Any = None,
        shared: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"`step` decorates functions; got {fn!r}.")
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError(
                f"`{fn.__qualname__}` is a generator function; a step returns its result. "
                f"Return a list, or feed items with `Pipeline.feed`."
            )
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = _name_of(fn)
        # How the step appears in events, plans and graphs: its name, made unique within its
        # pipeline when registered (two steps may share a ``__name__``).
        self.label = self.name
        self.key: tuple[str, str] = (
            getattr(fn, "__module__", "") or "",
            getattr(fn, "__qualname__", self.name),
        )
        self.provides = parse_provides(provides, self.name)
        self.params = _parse_params(fn, self.name)
        self.param_names = tuple(p.name for p in self.params)
        self.has_defaults = any(p.has_default for p in self.params)
        # A coroutine function proper is awaited directly (the fast path); other async
        # callables (an ``async def __call__``, a decorated or partial ``async def``) have
        # their result awaited; plain functions run on an executor.
        self.is_coroutine_function = inspect.iscoroutinefunction(fn)
        self.is_async = self.is_coroutine_function or _is_async_callable(fn)
        self.pipeline = pipeline
        self.engine = engine  # what the engine needs of the pipeline (`_engine.Engine`)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"`timeout` of `{self.name}` must be positive seconds or None.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` of `{self.name}` must be a whole number >= 0.")
        if not retry_delay >= 0:
            raise ValueError(f"`retry_delay` of `{self.name}` must be seconds >= 0.")
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        check_executor(executor, f"`{self.name}`")
        self.executor = executor
        if shared and not self.provides:
            raise TypeError(
                f"`{self.name}` is shared but provides nothing; a shared step's outputs are "
                f"what scopes share. Give it `provides=`, or drop `shared=True`."
            )
        self.shared = shared

    def replaces(self, other: Step[Any]) -> bool:
        """Whether this is the same definition as ``other``, run again (a notebook cell).

        Only a module-level function or method re-defined under the same module and qualified
        name replaces an earlier registration. Closures (``<locals>``), methods bound to
        different objects and other callables are distinct steps even when their names match.
        """
        if self.key != other.key or "<locals>" in self.key[1]:
            return False
        fn, old = self.fn, other.fn
        if isinstance(fn, types.FunctionType) and isinstance(old, types.FunctionType):
            return True
        if isinstance(fn, types.MethodType) and isinstance(old, types.MethodType):
            return fn.__self__ is old.__self__
        return False

    def __call__(self, **resources: Any) -> Coroutine[Any, Any, R]:
        """Compute this step; see the class docstring."""
        return self.engine.call(self, resources)

    def __repr__(self) -> str:
        return f"<Step {self.name} provides={self.provides!r}>"

    def __reduce__(self) -> str:
        # Pickled by reference, like the module-level function it replaces.
        return self.key[1]
