"""A step's observation of its inputs (`_inputs.Inputs`) is `combine_latest` + `first`.

Generated cases: a few input resources, some present from the start, the others completed with
a value, completed empty or failed, in any order. The outcome (ready with the inputs' values,
or stopped by which error) must be what `combine_latest(*inputs).pipe(first())` gives on the
same subjects, and the observer must be detached from every subject afterwards.

One difference is deliberate: an input that completes without a value stops the step at once
with `SequenceContainsNoElementsError`, as RxJS's `combineLatest` completes as soon as a source
completes empty. reactivex's `combine_latest` waits for the other inputs first, so a step
would wait for inputs that can no longer make it run. Without such an input, the outcome is
compared with reactivex itself.
"""

from __future__ import annotations

from typing import Any

import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex import operators as ops

from pipeliner_rx._inputs import Inputs
from pipeliner_rx._store import Resource


class Probe(Inputs):
    """Records what `Inputs` decides, once."""

    __slots__ = ("outcomes",)

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[tuple[str, Any]] = []

    def _ready(self) -> None:
        sources, self.sources = self.sources, ()
        self.outcomes.append(("ready", [source.value for source in sources]))

    def _lost(self, error: Exception) -> None:
        self._stop_listening()
        self.outcomes.append(("error", type(error).__name__))


class Boom(Exception):
    pass


def expected(fates: list[str], order: list[int]) -> tuple[str, Any]:
    """The first input to end without a value decides; else every value, in input order."""
    for index in (i for i in order if i < len(fates)):
        if fates[index] == "empty":
            return ("error", "SequenceContainsNoElementsError")
        if fates[index] == "error":
            return ("error", "Boom")
    return ("ready", [index * 10 for index in range(len(fates))])


# What happens to one input: present from the start, or later a value, no value, or an error.
FATES = st.sampled_from(["present", "value", "empty", "error"])


@given(
    fates=st.lists(FATES, min_size=1, max_size=5),
    order=st.permutations(range(5)),
)
def test_inputs_decide_as_combine_latest_first(fates: list[str], order: list[int]) -> None:
    subjects = [Resource() for _ in fates]
    for index, fate in enumerate(fates):
        if fate == "present":
            subjects[index].complete(index * 10)
    reference: list[tuple[str, Any]] = []
    reactivex.combine_latest(*subjects).pipe(ops.first()).subscribe(
        lambda values: reference.append(("ready", list(values))),
        lambda error: reference.append(("error", type(error).__name__)),
    )
    probe = Probe()
    probe.listen_to(subjects)
    for index in (i for i in order if i < len(fates)):
        subject, fate = subjects[index], fates[index]
        if fate == "value":
            subject.on_next(index * 10)
            subject.on_completed()
        elif fate == "empty":
            subject.on_completed()
        elif fate == "error":
            subject.on_error(Boom())
    assert probe.outcomes == [expected(fates, order)]
    if "empty" not in fates:
        assert probe.outcomes == reference
    assert not any(probe in subject.observers for subject in subjects)
    assert probe.waiting is None and probe.sources == ()
