"""The demand walk: which steps a call, `resource` or `observe` activates, checked as a whole.

A demand walks the missing part of the graph depth first with an explicit stack (depth costs
no recursion), raises `MissingResourceError` or `CycleError` before anything changes, then
commits: shared steps are demanded in the pipeline's store, demand counts are taken, the call's
own values are pushed, and the activations start.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactivex import Observable

from . import _starts
from ._activation import Activation, current_activation, release
from ._failure import failure_chain
from ._join import Join
from ._starts import queued
from ._store import Store, complete_all
from .exceptions import CycleError, MissingResourceError

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Link", "Listener", "activate"]


class Link(Activation):
    """A shared step, as a scope sees it: demanded in the pipeline's store, read from there.

    The step runs (at most once) in the pipeline's own store; the link holds a demand there
    and completes the scope's resources with the same values when they arrive.
    """

    __slots__ = ()

    def start(self) -> None:
        """Listen to the shared outputs in the pipeline's store."""
        home = self.store.root
        assert home is not None  # links are made only in scopes
        subjects = [home.subject(name) for name in self.step.provides]
        self.join = Join(subjects, self._ready, self._lost, self)

    def _ready(self, values: list[Any]) -> None:
        self.join = None
        if self.finished:
            return
        self._retire()
        upstream, self.upstream = self.upstream, []
        release(upstream)
        complete_all(self._subjects(), values)

    def cancel(self, error: Exception | None = None) -> None:
        """Stop listening, and withdraw the demand in the pipeline's store."""
        super().cancel(error)
        upstream, self.upstream = self.upstream, []
        release(upstream)


def _shared_hint(step: Step[Any]) -> str:
    return (
        f"`{step.name}` is shared (`shared=True`): it runs in the pipeline's own store, so it "
        f"may need only the pipeline's environment and other shared steps, not a scope's "
        f"values. Push what it needs with `add_environment_resources(...)` outside any scope, "
        f"or drop `shared=True`."
    )


class _Frame:
    __slots__ = ("deps", "index", "step", "unprovided", "via")

    def __init__(self, step: Step[Any], via: str | None) -> None:
        self.step = step
        self.via = via
        self.index = 0
        # Ordered set of the activations this step waits on.
        self.deps: dict[Activation, None] = {}
        self.unprovided: list[str] | None = None  # made only when there is one


def activate(
    store: Store,
    providers: Mapping[str, Step[Any]],
    *,
    step: Step[Any] | None = None,
    names: Sequence[str] = (),
    strict: bool,
    hint: str | None = None,
    supplied: Mapping[str, Any] | None = None,
) -> list[Activation]:
    """Activate what ``step`` (or the resources ``names``) need, and return the direct demands.

    Walks the missing part of the graph depth first with an explicit stack, so depth costs no
    recursion. ``strict`` (a step call) raises `MissingResourceError` for inputs nothing can
    supply, before anything starts, also when they are awaited by steps already active;
    otherwise such inputs are awaited until someone pushes them. A provider met again on the
    walk's own path, or the step whose task makes this demand, is a `CycleError`. ``step``
    itself is activated (privately if it provides nothing) unless it is active already. Each
    returned activation carries one demand for the caller, withdrawn with `release`.

    ``supplied`` are the call's own values: the walk treats them as present, and they are
    pushed only once the walk has succeeded, so a rejected call leaves the store as it was.
    """
    active = store.active
    created: dict[Step[Any], Activation] = {}
    on_path: dict[Step[Any], int] = {}
    order: list[Activation] = []
    missing: list[tuple[str, tuple[str, ...]]] = []
    stack: list[_Frame] = []
    root = _Frame(step, None) if step is not None else None
    running = current_activation.get()

    def chain() -> tuple[str, ...]:
        return tuple(frame.step.name for frame in reversed(stack))

    def inspect_active(found: Activation, via: str) -> None:
        # An activation of an earlier demand: look through it (iteratively) for inputs that
        # only a push can supply, and for the step that is making this demand.
        seen: set[Activation] = set()
        work = [(found, (found.step.name, *chain()))]
        while work:
            activation, needed_by = work.pop()
            if activation in seen or activation.finished:
                continue
            seen.add(activation)
            if activation is running:
                # `via` flows up the walk's stack to what the running step awaits inside.
                path = [via]
                for frame in reversed(stack):
                    path += [frame.step.name, frame.via or frame.step.name]
                raise CycleError([*path, activation.step.name, activation.step.provides[0]])
            if strict and activation.unprovided:
                missing.extend(
                    (name, needed_by) for name in activation.unprovided if not store.present(name)
                )
            work.extend((up, (up.step.name, *needed_by)) for up in activation.upstream)

    def need(name: str, has_default: bool, frame: _Frame | None) -> None:
        if store.present(name) or (supplied and name in supplied):
            return
        provider = providers.get(name)
        if provider is None:
            if not has_default:
                if strict:
                    missing.append((name, chain()))
                elif frame is not None:
                    if frame.unprovided is None:
                        frame.unprovided = []
                    frame.unprovided.append(name)
            return
        deps = frame.deps if frame is not None else top
        found = created.get(provider)
        if found is None:
            found = active.get(provider)
            if found is not None:
                inspect_active(found, name)
        if found is not None:
            deps[found] = None
            return
        if provider.shared and home is not None:
            link = Link(provider, store, False, context)
            created[provider] = link
            order.append(link)
            links.append(link)
            deps[link] = None
            return
        at = on_path.get(provider)
        if at is not None:
            path = [name]
            for frame_ in reversed(stack[at + 1 :]):
                path += [frame_.step.name, frame_.via or ""]
            raise CycleError([*path, provider.name, name])
        on_path[provider] = len(stack)
        stack.append(_Frame(provider, name))

    def walk() -> None:
        while stack:
            frame = stack[-1]
            params = frame.step.params
            if frame.index < len(params):
                param = params[frame.index]
                frame.index += 1
                need(param.name, param.has_default, frame)
                continue
            stack.pop()
            del on_path[frame.step]
            private = frame is root and not frame.step.provides
            activation = Activation(frame.step, store, private, context)
            activation.upstream = list(frame.deps)
            activation.unprovided = frame.unprovided
            if not private:
                created[frame.step] = activation
            order.append(activation)
            (stack[-1].deps if stack else top)[activation] = None

    top: dict[Activation, None] = {}
    context = contextvars.copy_context()
    home = store.root  # a scope's pipeline store, where its shared steps run
    links: list[Link] = []
    if root is not None:
        found = active.get(root.step) if root.step.provides else None
        if found is not None:
            inspect_active(found, root.step.provides[0])
            top[found] = None
        else:
            on_path[root.step] = 0
            stack.append(root)
            walk()
    for name in names:
        need(name, False, None)
        walk()
    if missing:
        raise MissingResourceError(missing, step.name if step is not None else names[0], hint)
    loop = store.loop
    if _starts.EAGER_START or (loop is not None and loop.get_task_factory() is not None):
        # Tasks may start eagerly: none starts before every activation has subscribed.
        with queued():
            return _commit(store, providers, order, links, list(top), supplied)
    return _commit(store, providers, order, links, list(top), supplied)


def _commit(
    store: Store,
    providers: Mapping[str, Step[Any]],
    order: list[Activation],
    links: list[Link],
    demands: list[Activation],
    supplied: Mapping[str, Any] | None,
) -> list[Activation]:
    """Make a successful walk real: shared demands, demand counts, the call's values, starts."""
    # Shared steps are demanded in the pipeline's store (each demand counted there once).
    shared_demands: list[list[Activation]] = []
    home = store.root
    for link in links:
        assert home is not None and store.loop is not None
        try:
            home.bind(store.loop)
            shared_demands.append(
                activate(
                    home,
                    providers,
                    names=link.step.provides,
                    strict=True,
                    hint=_shared_hint(link.step),
                )
            )
        except BaseException:
            for made in shared_demands:
                release(made)
            raise
    # Nothing changes in this store before the whole walk has succeeded.
    active = store.active
    for activation in order:
        if not activation.private:
            active[activation.step] = activation
        for upstream in activation.upstream:
            upstream.demand += 1
    for link, demanded in zip(links, shared_demands, strict=True):
        link.upstream = demanded
    for activation in demands:
        activation.demand += 1
    if supplied:
        store.push(supplied)
    _start_all(order)
    return demands


def _start_all(order: list[Activation]) -> None:
    for activation in order:
        if not activation.finished:
            activation.start()


class Listener:
    """A caller's side of a demand: wait for the sources, then withdraw and tell.

    Every way of asking for resources (a step call, `resource`, `observe`) listens through
    one: when the values arrive or one fails, the caller's demands are withdrawn (providers
    nobody needs any more are cancelled), a failure's chain is noted for this caller, and the
    caller hears. `withdraw` does the same for a caller that goes away first.
    """

    __slots__ = ("_held", "_join")

    def __init__(
        self,
        demands: list[Activation],
        sources: Sequence[Observable[Any]],
        what: str,
        ready: Callable[[list[Any]], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        # The demands until withdrawn, in a list of its own: the join's callback must not
        # hold the listener itself (a reference cycle per call).
        held = [demands]
        self._held = held

        def on_error(error: BaseException, index: int) -> None:
            _release(held)  # failed elsewhere perhaps: nobody needs the rest any more
            failure = demands[0].failure if demands else None
            if failure is not None and failure.error is error:
                failure.reached(what, failure_chain(demands[0]))
            failed(error)

        self._join = Join(sources, ready, on_error)

    @property
    def done(self) -> bool:
        """Whether the caller has heard (or withdrawn)."""
        return self._join.done

    def withdraw(self) -> None:
        """Stop listening (if still listening) and withdraw the demands, once.

        After the values arrived the caller withdraws too: providers still pending (their
        outputs were pushed meanwhile) are not needed any more.
        """
        self._join.dispose()
        _release(self._held)


def _release(held: list[list[Activation]]) -> None:
    if held:
        release(held.pop())
