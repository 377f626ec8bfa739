"""Store: one ``AsyncSubject`` per resource, and the steps activated to fill them."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactivex import abc
from reactivex.internal.basic import default_error, noop
from reactivex.internal.exceptions import DisposedException
from reactivex.subject import AsyncSubject

from .exceptions import PipelineError, ResourceConflictError, ScopeClosedError, StoreInUseError

if TYPE_CHECKING:
    from ._activation import Activation
    from ._step import Step

__all__ = [
    "Resource",
    "Store",
    "complete_all",
    "fail_subject",
    "is_present",
    "notify",
    "notify_error",
    "notify_settled",
    "same",
    "settle_all",
]

logger = logging.getLogger("pipeliner_rx")


def is_present(subject: AsyncSubject[Any]) -> bool:
    """Whether the subject completed with a value (errored subjects are replaced at once)."""
    return subject.is_stopped and subject.has_value


# One lock for every resource: the library changes resources only on their loop's thread, so
# it is never contended there, and a lock per resource (two, through AsyncSubject's constructor
# chain) was a large part of what a store costs. Users' own threads still get mutual exclusion.
_LOCK = threading.RLock()


class Resource(AsyncSubject[Any]):
    """The ``AsyncSubject`` of one resource of a store.

    `listen` attaches the library's own observers without ``Observable.subscribe``'s wrapping
    (a trampoline, an auto-detaching observer and three disposables per subscription): those
    observers keep Rx's grammar themselves, and a step's join subscribes to every input, so
    that wrapping would be most of the engine's cost. Users subscribe as usual.
    """

    def __init__(self) -> None:
        # AsyncSubject's constructor chain (Observer, Observable, Subject, AsyncSubject),
        # flattened: the same fields with the same initial values, and the shared lock.
        # `test_reactivex_contract` checks the fields against reactivex's own constructor.
        self.is_stopped = False
        self._handler_on_next = noop
        self._handler_on_error = default_error
        self._handler_on_completed = noop
        self.lock = _LOCK
        self._subscribe = None
        self.is_disposed = False
        self.observers: list[abc.ObserverBase[Any]] = []
        self.exception = None
        self.value = None
        self.has_value = False

    def listen(self, observer: abc.ObserverBase[Any]) -> bool:
        """Attach ``observer``; True if attached, False if it was called back at once.

        The same as ``AsyncSubject``'s own subscription without its ``InnerSubscription``
        (an object and a lock per subscription): the library's observers detach themselves
        with `detach`, and the store is only ever changed on its loop's thread.
        """
        with self.lock:
            if self.is_disposed:
                raise DisposedException()
            if not self.is_stopped:
                self.observers.append(observer)
                return True
            error, has_value, value = self.exception, self.has_value, self.value
        if error is not None:
            observer.on_error(error)
        elif has_value:
            observer.on_next(value)
            observer.on_completed()
        else:
            observer.on_completed()
        return False

    def detach(self, observer: abc.ObserverBase[Any]) -> None:
        """Undo `listen` (nothing to do once the subject stopped: it let go of everyone)."""
        if not self.is_stopped and not self.is_disposed:
            try:
                self.observers.remove(observer)
            except ValueError:
                pass

    def complete(self, value: Any) -> None:
        """``on_next(value)`` + ``on_completed()`` in one step, unless it completed already.

        The same notifications as ``AsyncSubject``'s own, taking the lock once instead of
        five times: emitting outputs is the engine's inner loop.
        """
        observers = self.settle(value)
        if observers:
            notify(observers, value)

    def settle(self, value: Any) -> list[abc.ObserverBase[Any]] | None:
        """Hold ``value`` and stop, without notifying; return the observers to notify.

        None if the subject had stopped already (present values win). Several subjects are
        settled first and notified after, so that no observer sees half of an emission.
        """
        with self.lock:
            if self.is_stopped or self.is_disposed:
                return None
            self.value = value
            self.has_value = True
            self.is_stopped = True
            observers, self.observers = self.observers, []
        return observers


def fail_subject(subject: Resource, error: BaseException) -> None:
    """Stop ``subject`` with ``error`` and tell its observers (each isolated)."""
    with subject.lock:
        if subject.is_stopped:
            return
        subject.is_stopped = True
        subject.exception = error  # type: ignore[assignment]  # BaseExceptions reach waiters too
        observers, subject.observers = subject.observers, []
    notify_error(observers, error)


def notify(observers: list[abc.ObserverBase[Any]], value: Any) -> None:
    """Send ``value`` and completion to each observer, each isolated from the others."""
    for observer in observers:
        try:
            observer.on_next(value)
            observer.on_completed()
        except Exception as exc:  # a subscriber's own bug must not starve the others
            _report(exc, observer)


def notify_error(observers: list[abc.ObserverBase[Any]], error: BaseException) -> None:
    """Send ``error`` to each observer, each isolated from the others."""
    for observer in observers:
        try:
            observer.on_error(error)  # type: ignore[arg-type]  # BaseExceptions reach waiters too
        except Exception as exc:
            _report(exc, observer)


def _report(error: Exception, observer: abc.ObserverBase[Any]) -> None:
    context = {"message": f"Error in a subscriber of a pipeliner_rx resource ({observer!r})"}
    try:
        asyncio.get_running_loop().call_exception_handler({**context, "exception": error})
    except RuntimeError:
        logger.error(context["message"], exc_info=error)


Settled = list[tuple[list[abc.ObserverBase[Any]] | None, Any]]


def settle_all(subjects: Sequence[Resource], values: Sequence[Any]) -> Settled:
    """Hold every value (the first phase of an emission); return who is to hear of which."""
    return [(s.settle(value), value) for s, value in zip(subjects, values, strict=True)]


def notify_settled(settled: Settled) -> None:
    """Tell each observer of its value (the second phase of an emission)."""
    for observers, value in settled:
        if observers:
            notify(observers, value)


def complete_all(subjects: Sequence[Resource], values: Sequence[Any]) -> None:
    """Complete several subjects as one emission: every value is held before anyone hears."""
    if len(subjects) == 1:
        subjects[0].complete(values[0])
        return
    notify_settled(settle_all(subjects, values))


def same(current: Any, new: Any) -> bool:
    """Whether ``new`` equals ``current`` by the rule for conflicts (a raising `==`: no)."""
    if current is new:
        return True
    try:
        return bool(current == new)
    except Exception:  # e.g. arrays, whose == is elementwise: treat as different
        return False


class Store:
    """The resources of one run: a subject per resource name, created on first use.

    A store is bound to the event loop that last used it; steps still active for an earlier,
    finished loop are forgotten when another loop takes the store over.
    """

    __slots__ = (
        "active",
        "closed",
        "feeds",
        "id",
        "loop",
        "private",
        "root",
        "stopping",
        "subjects",
    )

    def __init__(self, id: int = 0, root: Store | None = None) -> None:
        self.id = id  # 0 for a pipeline's own store, then one per scope
        self.root = root  # a scope's pipeline store, where shared steps run
        self.subjects: dict[str, Resource] = {}
        self.active: dict[Step[Any], Activation] = {}
        self.private: set[Activation] = set()  # running steps that provide nothing
        # Tasks of steps cancelled by the library and not finished yet: leaving a scope with
        # `async with` waits for them too.
        self.stopping: set[asyncio.Task[None]] = set()
        self.feeds: set[abc.DisposableBase] = set()  # `feed` subscriptions still waiting
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False  # a scope's store, once the scope is left

    def subject(self, name: str) -> Resource:
        """The subject of ``name``, created empty if the store has none yet."""
        subject = self.subjects.get(name)
        if subject is None:
            subject = self.subjects[name] = Resource()
        return subject

    def present(self, name: str) -> bool:
        """Whether ``name`` holds a value."""
        subject = self.subjects.get(name)
        return subject is not None and is_present(subject)

    def present_values(self) -> dict[str, Any]:
        """The values the store holds, by name."""
        return {name: s.value for name, s in self.subjects.items() if is_present(s)}

    def all_present(self, names: Iterable[str]) -> bool:
        """Whether every one of ``names`` holds a value."""
        subjects = self.subjects
        for name in names:
            subject = subjects.get(name)
            if subject is None or not is_present(subject):
                return False
        return True

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop`` the store's loop, dropping what was pending on a previous one.

        Every use of a store on a loop starts here, so this is also where a closed scope's
        store refuses work, and where a second running loop is refused.
        """
        if self.loop is loop and not self.closed:
            return
        if self.closed:
            raise ScopeClosedError(self.id)
        old = self.loop
        if old is not None:
            if old.is_running() and not old.is_closed():
                raise StoreInUseError(self.id)
            # Tasks and waiters of the old loop can never finish on this one: drop them, so
            # that new demand starts afresh instead of waiting on the dead, and tell whoever
            # still waits that it never will.
            for activation in [*self.active.values(), *self.private]:
                activation.cancel()
            self.active.clear()
            self.private.clear()
            stale = [
                (name, subject) for name, subject in self.subjects.items() if not subject.is_stopped
            ]
            for name, _ in stale:
                self.subjects[name] = Resource()
            if stale:
                error = PipelineError(
                    "The event loop this resource was awaited on finished before it was "
                    "computed. Await it while that loop runs, or demand it again on the new one."
                )
                for _, subject in stale:
                    fail_subject(subject, error)
        self.loop = loop

    def push(self, resources: Mapping[str, Any]) -> None:
        """Set resources, all or none: a different value for a present one is a conflict.

        Every value is held before any waiter hears of one, so a waiter that reacts to the
        first value (even by pushing) sees the whole push.
        """
        if self.closed:
            raise ScopeClosedError(self.id)
        self.check(resources)
        complete_all([self.subject(name) for name in resources], list(resources.values()))

    def seed(self, resources: Mapping[str, Any]) -> None:
        """Fill a new store, before anyone can observe it: no conflicts, nobody to notify."""
        subjects = self.subjects
        for name, value in resources.items():
            subject = subjects[name] = Resource()
            subject.value = value
            subject.has_value = subject.is_stopped = True

    def check(self, resources: Mapping[str, Any]) -> None:
        """Raise `ResourceConflictError` if any value differs from one the store holds."""
        for name, value in resources.items():
            if not isinstance(name, str):
                raise TypeError(f"Resource names are strings; got {name!r}.")
            subject = self.subjects.get(name)
            if subject is not None and is_present(subject) and not same(subject.value, value):
                raise ResourceConflictError(name, subject.value, value)

    def detach(self, names: Iterable[str]) -> list[tuple[str, Resource]]:
        """Give each missing resource of ``names`` a fresh subject; return the old ones.

        The old subjects are failed by the caller: errors are not cached, so a demand made
        from then on (even by a waiter that hears of the failure) runs the provider again.
        """
        subjects = self.subjects
        old = []
        for name in names:
            subject = subjects.get(name)
            if subject is not None and not subject.is_stopped:
                subjects[name] = Resource()
                old.append((name, subject))
        return old

    def clear(self, reason: Callable[[], Exception]) -> None:
        """Empty the store: stop every active step and fail whoever waits on a missing value.

        ``reason`` makes the error for those waiters, only if there are any.
        """
        feeds, self.feeds = self.feeds, set()
        for subscription in feeds:
            subscription.dispose()  # a feed into an emptied store would push into nothing
        activations = [*self.active.values(), *self.private]
        subjects, self.subjects = self.subjects, {}
        pending = [subject for subject in subjects.values() if not subject.is_stopped]
        self.active.clear()
        self.private.clear()
        if not activations and not pending:
            return
        error = reason()
        for activation in activations:
            activation.cancel(error)
        for subject in pending:
            fail_subject(subject, error)
