"""Store: one ``AsyncSubject`` per resource, and the steps activated to fill them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from reactivex import abc
from reactivex.subject import AsyncSubject

from ._compare import same as _same
from .exceptions import ResourceConflictError, ScopeClosedError

if TYPE_CHECKING:
    from ._activation import Activation
    from ._step import Step

__all__ = ["Resource", "Store", "is_present"]


def is_present(subject: AsyncSubject[Any]) -> bool:
    """Whether the subject completed with a value (errored subjects are replaced at once)."""
    return subject.is_stopped and subject.has_value


class Resource(AsyncSubject[Any]):
    """The ``AsyncSubject`` of one resource of a store.

    `listen` attaches the library's own observers without ``Observable.subscribe``'s wrapping
    (a trampoline, an auto-detaching observer and three disposables per subscription): those
    observers keep Rx's grammar themselves, and a step's join subscribes to every input, so
    that wrapping would be most of the engine's cost. Users subscribe as usual.
    """

    def listen(self, observer: abc.ObserverBase[Any]) -> bool:
        """Attach ``observer``; True if attached, False if it was called back at once.

        The same as ``AsyncSubject``'s own subscription without its ``InnerSubscription``
        (an object and a lock per subscription): the library's observers detach themselves
        with `detach`, and the store is only ever changed on its loop's thread.
        """
        with self.lock:
            self.check_disposed()
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
        with self.lock:
            if self.is_stopped or self.is_disposed:
                return  # present values win
            self.value = value
            self.has_value = True
            self.is_stopped = True
            observers, self.observers = self.observers, []
        for observer in observers:
            observer.on_next(value)
            observer.on_completed()


class Store:
    """The resources of one run: a subject per resource name, created on first use.

    A store is bound to the event loop that last used it; steps still active for an earlier,
    finished loop are forgotten when another loop takes the store over.
    """

    __slots__ = ("active", "closed", "feeds", "id", "loop", "private", "subjects")

    def __init__(self, id: int = 0) -> None:
        self.id = id  # 0 for a pipeline's own store, then one per scope
        self.subjects: dict[str, Resource] = {}
        self.active: dict[Step[Any], Activation] = {}
        self.private: set[Activation] = set()  # running steps that provide nothing
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
        store refuses work.
        """
        if self.loop is loop and not self.closed:
            return
        if self.closed:
            raise ScopeClosedError(self.id)
        if self.loop is not None:
            # Tasks and waiters of the old loop can never finish on this one: drop them, so
            # that new demand starts afresh instead of waiting on the dead.
            for activation in [*self.active.values(), *self.private]:
                activation.cancel()
            self.active.clear()
            self.private.clear()
            for name, subject in list(self.subjects.items()):
                if not subject.is_stopped:
                    self.subjects[name] = Resource()
        self.loop = loop

    def push(self, resources: Mapping[str, Any]) -> None:
        """Set resources, all or none: a different value for a present one is a conflict."""
        if self.closed:
            raise ScopeClosedError(self.id)
        for name, value in resources.items():
            subject = self.subjects.get(name)
            if subject is not None and is_present(subject) and not _same(subject.value, value):
                raise ResourceConflictError(name, subject.value, value)
        for name, value in resources.items():
            self.subject(name).complete(value)

    def fail(self, name: str, error: Exception) -> None:
        """Deliver ``error`` to the waiters of ``name``; the resource itself stays missing."""
        subject = self.subjects.get(name)
        if subject is None or subject.is_stopped:
            return
        # Errors are not cached: later demand finds a fresh subject and runs the provider again.
        self.subjects[name] = Resource()
        subject.on_error(error)

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
            subject.on_error(error)
