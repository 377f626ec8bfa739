"""Demands: the activations a call, `resource` or `observe` makes from a compiled plan.

A demand takes the pipeline's compiled plan for the store's state (`_plans`), shares the steps
that are active already, raises `MissingResourceError` or `CycleError` before anything changes,
then commits: shared steps are demanded in the pipeline's store, demand counts are taken, the
call's own values are pushed, and the activations start.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactivex import Observable

from . import _starts
from ._activation import Activation, current_activation, release
from ._failure import failure_chain
from ._join import Join, One
from ._plans import Compiled
from ._starts import queued
from ._store import Resource, Store, complete_all
from .exceptions import CycleError, MissingResourceError

if TYPE_CHECKING:
    from ._engine import Engine
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
        self.listen_to([home.subject(name) for name in self.step.provides])

    def _ready(self) -> None:
        sources, self.sources = self.sources, ()
        if self.finished:
            return
        self._retire()
        upstream, self.upstream = self.upstream, ()
        release(upstream)
        complete_all(self._subjects(), [source.value for source in sources])

    def cancel(self, error: Exception | None = None) -> None:
        """Stop listening, and withdraw the demand in the pipeline's store."""
        super().cancel(error)
        upstream, self.upstream = self.upstream, ()
        release(upstream)


def _shared_hint(step: Step[Any]) -> str:
    return (
        f"`{step.name}` is shared (`shared=True`): it runs in the pipeline's own store, so it "
        f"may need only the pipeline's environment and other shared steps, not a scope's "
        f"values. Push what it needs with `add_environment_resources(...)` outside any scope, "
        f"or drop `shared=True`."
    )


def activate(
    engine: Engine,
    store: Store,
    *,
    step: Step[Any] | None = None,
    names: Sequence[str] = (),
    strict: bool,
    hint: str | None = None,
    supplied: Mapping[str, Any] | None = None,
) -> list[Activation]:
    """Activate what ``step`` (or the resources ``names``) need, and return the direct demands.

    The walk is the pipeline's compiled plan for the store's state (`_plans`); steps of it
    that are active already are shared, not made again. ``strict`` (a step call) raises
    `MissingResourceError` for inputs nothing can supply, before anything starts, also when
    they are awaited by steps already active; otherwise such inputs are awaited until someone
    pushes them. A cycle, or a demand that comes back to the step whose task makes it, is a
    `CycleError`. ``step`` itself is activated (privately if it provides nothing) unless it is
    active already. Each returned activation carries one demand for the caller, withdrawn with
    `release`.

    ``supplied`` are the call's own values: the plan treats them as present, and they are
    pushed only once the demand is checked, so a rejected call leaves the store as it was.
    """
    plan = engine.plans.get(store, step, tuple(names), strict, supplied or None)
    missing = list(plan.missing)
    count = len(plan.steps)
    made: list[Activation | None] = [None] * count
    make = [True] * count
    active = store.active
    if active:
        # Steps active already (an earlier demand) are shared: what only they need is not made.
        make = [False] * count
        running = current_activation.get()
        work = list(plan.top)
        while work:
            index = work.pop()
            if make[index] or made[index] is not None:
                continue
            found = None if index == plan.private else active.get(plan.steps[index])
            if found is None:
                make[index] = True
                work.extend(plan.deps[index])
                continue
            made[index] = found
            _inspect_active(plan, index, found, running, strict, store, missing)
    if missing:
        raise MissingResourceError(missing, step.name if step is not None else names[0], hint)
    context = contextvars.copy_context()
    order: list[Activation] = []
    links: list[Link] = []
    for index in range(count):
        if not make[index]:
            continue
        s = plan.steps[index]
        activation: Activation
        if plan.links[index]:
            link = Link(s, store, False, context)
            links.append(link)
            activation = link
        else:
            activation = Activation(s, store, index == plan.private, context)
            deps = plan.deps[index]
            if deps:
                activation.upstream = list(map(made.__getitem__, deps))  # type: ignore[arg-type]
            activation.unprovided = plan.unprovided[index]
            activation.inputs = plan.inputs[index]
        made[index] = activation
        order.append(activation)
    demands: list[Activation] = [made[index] for index in plan.top]  # type: ignore[misc]
    loop = store.loop
    if _starts.EAGER_START or (loop is not None and loop.get_task_factory() is not None):
        # Tasks may start eagerly: none starts before every activation has subscribed.
        with queued():
            return _commit(engine, store, order, links, demands, supplied)
    return _commit(engine, store, order, links, demands, supplied)


def _inspect_active(
    plan: Compiled,
    index: int,
    found: Activation,
    running: Activation | None,
    strict: bool,
    store: Store,
    missing: list[tuple[str, tuple[str, ...]]],
) -> None:
    """Look through an active step of the plan (iteratively) for inputs only a push can
    supply, and for the step whose task makes this demand (which would wait on itself)."""
    parent = plan.parent[index]
    needed_by = plan.chain(parent) if parent >= 0 else ()
    seen: set[Activation] = set()
    work = [(found, (found.step.name, *needed_by))]
    while work:
        activation, chain = work.pop()
        if activation in seen or activation.finished:
            continue
        seen.add(activation)
        if activation is running:
            # The path runs from what the running step awaits, up the plan, to the step.
            path = [plan.via[index] or found.step.provides[0]]
            while parent >= 0:
                path += [plan.steps[parent].name, plan.via[parent] or plan.steps[parent].name]
                parent = plan.parent[parent]
            raise CycleError([*path, activation.step.name, activation.step.provides[0]])
        if strict and activation.unprovided:
            missing.extend(
                (name, chain) for name in activation.unprovided if not store.present(name)
            )
        work.extend((up, (up.step.name, *chain)) for up in activation.upstream)


def _commit(
    engine: Engine,
    store: Store,
    order: list[Activation],
    links: list[Link],
    demands: list[Activation],
    supplied: Mapping[str, Any] | None,
) -> list[Activation]:
    """Make a checked demand real: shared demands, demand counts, the call's values, starts."""
    # Shared steps are demanded in the pipeline's store (each demand counted there once).
    shared_demands: list[list[Activation]] = []
    home = store.root
    for link in links:
        assert home is not None and store.loop is not None
        try:
            home.bind(store.loop)
            shared_demands.append(
                activate(
                    engine,
                    home,
                    names=link.step.provides,
                    strict=True,
                    hint=_shared_hint(link.step),
                )
            )
        except BaseException:
            for made in shared_demands:
                release(made)
            raise
    # Nothing changes in this store before the whole demand has been checked.
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

        if len(sources) == 1 and isinstance(sources[0], Resource):
            self._join: Join | One = One(sources[0], ready, on_error)
        else:
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
