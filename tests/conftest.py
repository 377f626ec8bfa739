from __future__ import annotations

from collections.abc import Iterator

import pytest

import pipeliner_rx
from pipeliner_rx import Pipeline, _api


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@pytest.fixture(autouse=True)
def fresh_default_pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """Each test gets an empty default pipeline, as a fresh process would."""
    fresh = Pipeline()
    monkeypatch.setattr(_api, "_default", fresh)
    assert pipeliner_rx.default_pipeline() is fresh
    yield fresh
