"""The parts of reactivex's internals that pipeliner_rx relies on, checked against the installed
release: if one changes, these tests fail with a message saying where the library uses it,
instead of the engine hanging on a subject that never calls back.

setup.cfg pins the range these pass on (``reactivex>=4.0,<7``).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from reactivex import abc
from reactivex.subject import AsyncSubject, Subject

RELEASE = version("reactivex")


def broken(what: str, used_by: str) -> str:
    """The failure message: what changed, who relies on it, and what to do."""
    return (
        f"reactivex {RELEASE}: {what}. pipeliner_rx relies on it in {used_by}; adapt that code "
        f"to this release, or keep reactivex within the range setup.cfg pins."
    )


class Recorder(abc.ObserverBase[Any]):
    """A bare observer, as the library's own (a join's slots) are: no Rx wrapping."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_next(self, value: Any) -> None:
        self.calls.append(("next", value))

    def on_error(self, error: Exception) -> None:
        self.calls.append(("error", error))

    def on_completed(self) -> None:
        self.calls.append(("completed",))


def test_subject_keeps_its_subscribers_in_one_list_changed_in_place() -> None:
    subject: Subject[int] = Subject()
    observers = getattr(subject, "observers", None)
    assert isinstance(observers, list), broken(
        "`Subject.observers` is no longer a list", "`_events.Events` (its no-listener check)"
    )
    subscription = subject.subscribe(lambda value: None)
    assert subject.observers is observers and len(observers) == 1, broken(
        "subscribing to a `Subject` no longer appends to its `observers` list in place",
        "`_events.Events`, which keeps that list to tell whether anyone listens",
    )
    subscription.dispose()
    assert subject.observers is observers and observers == [], broken(
        "disposing a `Subject` subscription no longer removes it from `observers` in place",
        "`_events.Events`, which keeps that list to tell whether anyone listens",
    )


def test_subject_notifies_observers_appended_to_its_list() -> None:
    subject: Subject[int] = Subject()
    recorder = Recorder()
    subject.observers.append(recorder)
    subject.on_next(1)
    assert recorder.calls == [("next", 1)], broken(
        "`Subject.on_next` no longer notifies the observers in `Subject.observers`",
        "`_store.Resource.listen`, which attaches a step's inputs by appending there",
    )
    error = ValueError("failed")
    subject.on_error(error)
    assert recorder.calls[1:] == [("error", error)], broken(
        "`Subject.on_error` no longer notifies the observers in `Subject.observers`",
        "`_store.Resource.listen` and `Store.fail`: a failed input would never reach its step",
    )
    assert subject.exception is error and subject.is_stopped, broken(
        "a `Subject` that failed no longer has `exception` set and `is_stopped` true",
        "`_store.Resource.listen` and `Store` (`is_stopped` tells a finished resource)",
    )


def test_async_subject_state_lives_in_its_attributes() -> None:
    subject: AsyncSubject[int] = AsyncSubject()
    fresh = (subject.is_stopped, subject.has_value, subject.exception, subject.is_disposed)
    assert fresh == (False, False, None, False), broken(
        "a new `AsyncSubject` no longer has `is_stopped`, `has_value`, `exception` and "
        f"`is_disposed` set to False, False, None, False (got {fresh!r})",
        "`_store.is_present`, `_store.Resource` and `_join.Join`",
    )
    recorder = Recorder()
    subject.observers.append(recorder)
    subject.on_next(5)
    assert subject.has_value and subject.value == 5 and not subject.is_stopped, broken(
        "`AsyncSubject.on_next` no longer keeps the value in `value` and sets `has_value`",
        "`_store.is_present` and `_join.Join`, which read a present resource's value there",
    )
    subject.on_completed()
    assert subject.is_stopped and recorder.calls == [("next", 5), ("completed",)], broken(
        "`AsyncSubject.on_completed` no longer sets `is_stopped` and notifies the observers "
        "in `observers` with the value, then completion",
        "`_store.is_present` and `_store.Resource.listen`",
    )


def test_async_subject_completed_through_its_attributes_acts_completed() -> None:
    # What `Resource.complete` does: one lock, the fields set directly, the list handed over.
    subject: AsyncSubject[int] = AsyncSubject()
    with subject.lock:
        subject.check_disposed()
        subject.value = 7
        subject.has_value = True
        subject.is_stopped = True
        subject.observers = []
    late = Recorder()
    subject.subscribe(late)
    assert late.calls == [("next", 7), ("completed",)], broken(
        "an `AsyncSubject` whose `value`, `has_value` and `is_stopped` are set directly no "
        "longer replays the value to new subscribers",
        "`_store.Resource.complete`, which completes resources that way",
    )
    subject.on_next(8)
    subject.on_completed()
    assert subject.value == 7 and late.calls == [("next", 7), ("completed",)], broken(
        "`AsyncSubject.on_next` no longer ignores values once `is_stopped` is set",
        "`_store.Resource.complete` (a present value wins over later ones)",
    )


def test_subject_lock_and_disposal() -> None:
    subject: AsyncSubject[int] = AsyncSubject()
    lock = getattr(subject, "lock", None)
    assert hasattr(lock, "__enter__") and hasattr(lock, "__exit__"), broken(
        "`Subject.lock` is no longer a lock usable with `with`",
        "`_store.Resource.listen` and `Resource.complete`",
    )
    subject.check_disposed()  # no error while alive
    subject.dispose()
    assert subject.is_disposed, broken(
        "a disposed `Subject` no longer has `is_disposed` set", "`_store.Resource.detach`"
    )
    try:
        subject.check_disposed()
    except Exception as exc:
        assert type(exc).__name__ == "DisposedException", broken(
            f"`Subject.check_disposed` raises {type(exc).__name__}, not DisposedException",
            "`_store.Resource.listen`",
        )
    else:
        raise AssertionError(
            broken(
                "`Subject.check_disposed` no longer raises once the subject is disposed",
                "`_store.Resource.listen`",
            )
        )


def test_sequence_contains_no_elements_error_is_importable() -> None:
    try:
        from reactivex.internal.exceptions import SequenceContainsNoElementsError
    except ImportError as exc:
        raise AssertionError(
            broken(
                "`reactivex.internal.exceptions.SequenceContainsNoElementsError` is gone",
                "`_join`, which fails a step whose input completed without a value",
            )
        ) from exc
    assert issubclass(SequenceContainsNoElementsError, Exception), broken(
        "`SequenceContainsNoElementsError` is no longer an Exception", "`_join`"
    )
    assert str(SequenceContainsNoElementsError()), broken(
        "`SequenceContainsNoElementsError()` no longer has a message", "`_join`"
    )


def test_resource_constructor_sets_what_async_subject_sets() -> None:
    from pipeliner_rx._store import Resource

    expected = vars(AsyncSubject())
    made = vars(Resource())
    assert made.keys() == expected.keys(), broken(
        f"`AsyncSubject()` now sets the fields {sorted(expected)}, not {sorted(made)}",
        "`_store.Resource.__init__`, which sets them itself instead of calling the chain",
    )
    for name, value in expected.items():
        if name != "lock":
            assert made[name] == value, broken(
                f"`AsyncSubject().{name}` starts as {value!r}",
                "`_store.Resource.__init__`",
            )
