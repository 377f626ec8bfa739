"""The lean join behaves like reactivex's `combine_latest(...)` + `first()`."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import AsyncSubject, Subject

from pipeliner_rx._join import Join


def record(sources: list[Any]) -> tuple[list[Any], Join]:
    events: list[Any] = []
    join = Join(
        sources,
        lambda v: events.append(("ready", list(v))),
        lambda e, i: events.append(("error", e, i)),
    )
    return events, join


def reference(sources: list[Any]) -> list[Any]:
    events: list[Any] = []
    reactivex.combine_latest(*sources).pipe(ops.first()).subscribe(
        lambda v: events.append(("ready", list(v))), lambda e: events.append(("error", e))
    )
    return events


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_join_emits_once_with_values_in_source_order(order: list[int]) -> None:
    mine = [AsyncSubject[int]() for _ in range(3)]
    theirs = [AsyncSubject[int]() for _ in range(3)]
    events, _ = record(mine)
    expected = reference(theirs)
    for i in order:
        for subjects in (mine, theirs):
            subjects[i].on_next(i * 10)
            subjects[i].on_completed()
    assert events == expected == [("ready", [0, 10, 20])]


def test_join_takes_first_values_of_hot_sources_and_detaches() -> None:
    a, b = Subject[int](), Subject[int]()
    events, _ = record([a, b])
    a.on_next(1)
    a.on_next(2)  # latest wins before all have a value, as in combine_latest
    b.on_next(3)
    b.on_next(4)
    assert events == [("ready", [2, 3])]
    assert a.observers == [] and b.observers == []


def test_join_of_completed_sources_fires_synchronously() -> None:
    subject = AsyncSubject[int]()
    subject.on_next(7)
    subject.on_completed()
    events, join = record([subject, subject])
    assert events == [("ready", [7, 7])]
    assert join.done


def test_join_of_nothing_is_ready_at_once() -> None:
    events, _ = record([])
    assert events == [("ready", [])]


def test_join_error_reports_index_and_detaches_the_rest() -> None:
    a, b = AsyncSubject[int](), AsyncSubject[int]()
    events, _ = record([a, b])
    boom = ValueError("x")
    b.on_error(boom)
    a.on_next(1)
    a.on_completed()
    assert events == [("error", boom, 1)]
    assert a.observers == []


def test_join_dispose_withdraws_subscriptions() -> None:
    a, b = AsyncSubject[int](), AsyncSubject[int]()
    events, join = record([a, b])
    join.dispose()
    assert a.observers == [] and b.observers == []
    a.on_next(1)
    a.on_completed()
    b.on_next(1)
    b.on_completed()
    assert events == []


def test_join_empty_completion_is_an_error() -> None:
    a = AsyncSubject[int]()
    events, _ = record([a])
    a.on_completed()
    assert events[0][0] == "error"


def record_one(source: Any) -> tuple[list[Any], Any]:
    from pipeliner_rx._join import One

    events: list[Any] = []
    one = One(
        source,
        lambda v: events.append(("ready", list(v))),
        lambda e, i: events.append(("error", type(e).__name__, i)),
    )
    return events, one


@pytest.mark.parametrize("case", ["present", "later", "error", "empty", "failed", "disposed"])
def test_one_acts_like_first_of_a_single_resource(case: str) -> None:
    from pipeliner_rx._store import Resource, fail_subject

    mine, theirs = Resource(), AsyncSubject[int]()
    if case in ("present", "failed"):
        for subject in (mine, theirs):
            if case == "present":
                subject.on_next(3)
                subject.on_completed()
    if case == "failed":
        fail_subject(mine, ValueError("x"))
        theirs.on_error(ValueError("x"))
    events, one = record_one(mine)
    expected = reference([theirs])
    if case == "later":
        for subject in (mine, theirs):
            subject.on_next(4)
            subject.on_completed()
    elif case == "error":
        for subject in (mine, theirs):
            subject.on_error(ValueError("y"))
    elif case == "empty":
        for subject in (mine, theirs):
            subject.on_completed()
    elif case == "disposed":
        one.dispose()
        mine.on_next(5)
        mine.on_completed()
        assert events == [] and one.done and mine.observers == []
        return
    assert one.done
    assert [e[0] for e in events] == [e[0] for e in expected]
    if events[0][0] == "ready":
        assert events == expected
    else:
        assert events[0][2] == 0
        assert events[0][1] == type(expected[0][1]).__name__
