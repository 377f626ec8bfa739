"""OpenTelemetry tracing (`pipeliner_rx.otel`): one span per step attempt, under its request."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from dags import Dag, Log, Target, build, demand, run, settle, starts
from hypothesis import given, settings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_core import make_seed
from test_properties import cases

import pipeliner_rx.otel
from pipeliner_rx import MissingResourceError, Pipeline, StepEvent
from pipeliner_rx.otel import Instrumentation, instrument


@dataclass
class Tracing:
    """An SDK tracer provider whose finished spans are kept in memory."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("tests")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        (span,) = [span for span in self.spans() if span.name == name]
        return span

    def tree(self) -> dict[str, str | None]:
        """Each span's name -> its parent's name (None for a root); names must be unique."""
        spans = self.spans()
        names = {span.context.span_id: span.name for span in spans if span.context is not None}
        assert len(names) == len(spans) == len({span.name for span in spans})
        return {
            span.name: names[span.parent.span_id] if span.parent is not None else None
            for span in spans
        }


def make_tracing() -> Tracing:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, exporter)


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = make_tracing()
    yield tracing
    tracing.provider.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    value: int = span.context.span_id
    return value


def test_public_module_exports() -> None:
    assert pipeliner_rx.otel.__all__ == ["Instrumentation", "instrument"]
    for name in pipeliner_rx.otel.__all__:
        assert hasattr(pipeliner_rx.otel, name)


async def test_a_request_through_the_seed_pipeline_is_one_span_tree(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    steps = make_seed(pipeline, [])
    pipeline.add_environment_resources(base=38)
    with instrument(pipeline, tracer_provider=tracing.provider) as instrumentation:
        assert isinstance(instrumentation, Instrumentation)
        with tracing.tracer.start_as_current_span("GET /division"):
            assert await asyncio.wait_for(steps["get_division"](divisor=3), 1) == (38, 12, 2)
        with tracing.tracer.start_as_current_span("GET /resmod"):
            assert await asyncio.wait_for(steps["get_resmod"](), 1) == (24, 10)
    assert tracing.tree() == {
        "GET /division": None,
        "step divide": "GET /division",
        "step mod": "GET /division",
        "step get_division": "GET /division",
        "GET /resmod": None,
        "step get_resmod": "GET /resmod",
    }  # base_provider did not run (`base` was present): no span
    divide = tracing.named("step divide")
    assert dict(divide.attributes or {}) == {
        "pipeliner_rx.step": "divide",
        "pipeliner_rx.provides": ("result",),
        "pipeliner_rx.scope": 0,
        "pipeliner_rx.attempt": 1,
    }
    assert divide.status.status_code is StatusCode.UNSET
    assert tracing.named("step get_resmod").attributes == {
        "pipeliner_rx.step": "get_resmod",
        "pipeliner_rx.provides": ("res_times_mod", "res_minus_mod"),
        "pipeliner_rx.scope": 0,
        "pipeliner_rx.attempt": 1,
    }
    assert (tracing.named("step get_division").attributes or {})["pipeliner_rx.provides"] == ()
    # The dataflow shows in the timing: get_division starts once both its inputs are there.
    division = tracing.named("step get_division")
    assert division.start_time is not None
    for name in ("step divide", "step mod"):
        end_time = tracing.named(name).end_time
        assert end_time is not None and end_time <= division.start_time


async def test_a_failed_step_records_its_exception_and_errors_its_span(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    @pipeline.step(provides="raw")
    async def fetch() -> int:
        raise ValueError("upstream said no")

    @pipeline.step(provides="cooked")
    async def cook(raw: int) -> int:
        return raw

    with instrument(pipeline, tracing.provider):
        with tracing.tracer.start_as_current_span("request"):
            with pytest.raises(ValueError, match="upstream said no"):
                await asyncio.wait_for(cook(), 1)
    assert tracing.tree() == {"request": None, "step fetch": "request"}  # cook never started
    span = tracing.named("step fetch")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: upstream said no"
    (exception,) = [event for event in span.events if event.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "upstream said no"


async def test_retries_make_one_span_per_attempt(pipeline: Pipeline, tracing: Tracing) -> None:
    attempts = 0

    @pipeline.step(provides="x", retries=2)
    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError(f"attempt {attempts} failed")
        return attempts

    with instrument(pipeline, tracing.provider):
        with tracing.tracer.start_as_current_span("request") as request:
            assert await asyncio.wait_for(flaky(), 1) == 3
    spans = [span for span in tracing.spans() if span.name == "step flaky"]
    assert [(span.attributes or {})["pipeliner_rx.attempt"] for span in spans] == [1, 2, 3]
    assert [span.status.status_code for span in spans] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [span.status.description for span in spans[:2]] == [
        "ConnectionError: attempt 1 failed",
        "ConnectionError: attempt 2 failed",
    ]
    # Siblings under the request, one after the other; an attempt is not a retry's parent.
    assert {parent_id(span) for span in spans} == {request.get_span_context().span_id}
    for earlier, later in itertools.pairwise(spans):
        assert earlier.end_time is not None and later.start_time is not None
        assert earlier.end_time <= later.start_time


async def test_concurrent_scopes_trace_under_their_own_requests(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    steps = make_seed(pipeline, [])
    pipeline.add_environment_resources(base=38)

    async def handle(divisor: int) -> int:
        with tracing.tracer.start_as_current_span(f"request {divisor}"):
            async with pipeline.scope(divisor=divisor) as scope:
                await steps["get_division"]()
                return scope.id

    with instrument(pipeline, tracing.provider):
        scope_ids = await asyncio.wait_for(asyncio.gather(handle(3), handle(5)), 2)
    assert len(set(scope_ids)) == 2 and 0 not in scope_ids
    for divisor, scope_id in zip((3, 5), scope_ids, strict=True):
        request = tracing.named(f"request {divisor}")
        children = [span for span in tracing.spans() if parent_id(span) == span_id(request)]
        assert sorted(span.name for span in children) == [
            "step divide",
            "step get_division",
            "step mod",
        ]
        assert {(span.attributes or {})["pipeliner_rx.scope"] for span in children} == {scope_id}


async def test_a_sync_step_on_a_thread_pool_is_traced_and_parents_its_own_spans(
    tracing: Tracing,
) -> None:
    threads: list[int] = []
    with ThreadPoolExecutor(2) as pool:
        pipeline = Pipeline(executor=pool)

        @pipeline.step(provides="parsed")
        def parse(raw: str) -> int:
            threads.append(threading.get_ident())
            with tracing.tracer.start_as_current_span("int()"):
                return int(raw)

        with instrument(pipeline, tracing.provider):
            with tracing.tracer.start_as_current_span("request"):
                assert await asyncio.wait_for(parse(raw="42"), 1) == 42
    assert threads and threads[0] != threading.get_ident()  # not on the loop's thread
    assert tracing.tree() == {"request": None, "step parse": "request", "int()": "step parse"}


async def test_a_demand_made_inside_a_step_is_a_child_of_that_step(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    @pipeline.step(provides="total")
    async def add(x: int) -> int:
        return x + 1

    @pipeline.step(provides="detail")
    async def describe(x: int) -> str:
        return f"x={x}"

    @pipeline.step(provides="report")
    async def report(total: int) -> str:
        return f"{total} ({await pipeline.resource('detail')})"

    with instrument(pipeline, tracing.provider):
        with tracing.tracer.start_as_current_span("request"):
            assert await asyncio.wait_for(report(x=1), 1) == "2 (x=1)"
    assert tracing.tree() == {
        "request": None,
        "step add": "request",
        "step report": "request",
        "step describe": "step report",
    }


async def test_a_cancelled_step_is_marked_cancelled(pipeline: Pipeline, tracing: Tracing) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @pipeline.step(provides="x")
    async def hang() -> int:
        started.set()
        await asyncio.Event().wait()
        return 1

    def on_event(event: StepEvent) -> None:
        if event.kind == "cancelled":
            cancelled.set()

    with instrument(pipeline, tracing.provider):
        # Subscribed after the instrumentation: it hears of the cancellation after it.
        subscription = pipeline.events.subscribe(on_event)
        with tracing.tracer.start_as_current_span("request"):
            call = asyncio.ensure_future(hang())
        await asyncio.wait_for(started.wait(), 1)
        call.cancel()  # the caller goes away: nobody needs the step any more
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(cancelled.wait(), 1)
        subscription.dispose()
    span = tracing.named("step hang")
    assert tracing.tree() == {"request": None, "step hang": "request"}
    assert (span.attributes or {})["pipeliner_rx.cancelled"] is True
    assert [event.name for event in span.events] == ["cancelled"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"


async def test_uninstrument_stops_spans_and_listening(pipeline: Pipeline, tracing: Tracing) -> None:
    @pipeline.step(provides="x")
    async def make_x() -> int:
        return 1

    assert pipeline._engine.events.observers == []  # nothing listens: events cost nothing
    instrumentation = instrument(pipeline, tracing.provider)
    assert len(pipeline._engine.events.observers) == 1
    await asyncio.wait_for(make_x(), 1)
    instrumentation.uninstrument()
    instrumentation.uninstrument()  # again: nothing happens
    assert pipeline._engine.events.observers == []
    pipeline.reset()
    await asyncio.wait_for(make_x(), 1)
    assert [span.name for span in tracing.spans()] == ["step make_x"]
    with instrument(pipeline, tracing.provider):
        pipeline.reset()
        await asyncio.wait_for(make_x(), 1)
    pipeline.reset()
    await asyncio.wait_for(make_x(), 1)
    assert [span.name for span in tracing.spans()] == ["step make_x", "step make_x"]
    assert pipeline._engine.events.observers == []


async def test_uninstrument_lets_running_attempts_end_their_spans(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @pipeline.step(provides="x")
    async def slow() -> int:
        started.set()
        await gate.wait()
        return 1

    instrumentation = instrument(pipeline, tracing.provider)
    call = asyncio.ensure_future(slow())
    await asyncio.wait_for(started.wait(), 1)
    instrumentation.uninstrument()
    assert len(pipeline._engine.events.observers) == 1  # still waiting for the running attempt
    gate.set()
    assert await asyncio.wait_for(call, 1) == 1
    assert pipeline._engine.events.observers == []
    span = tracing.named("step slow")
    assert span.end_time is not None and span.status.status_code is StatusCode.UNSET


async def test_two_instrumented_pipelines_trace_independently(tracing: Tracing) -> None:
    first, second = Pipeline(), Pipeline()

    @first.step(provides="a")
    async def make_a() -> int:
        return 1

    @second.step(provides="b")
    async def make_b() -> int:
        return await make_a()

    with instrument(first, tracing.provider), instrument(second, tracing.provider):
        with tracing.tracer.start_as_current_span("request"):
            assert await asyncio.wait_for(make_b(), 1) == 1
    assert tracing.tree() == {
        "request": None,
        "step make_b": "request",
        "step make_a": "step make_b",
    }


async def test_the_parent_is_the_activating_request_when_another_completes_the_input(
    pipeline: Pipeline, tracing: Tracing
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @pipeline.step(provides="raw")
    async def fetch() -> int:
        started.set()
        await gate.wait()
        return 1

    @pipeline.step(provides="cooked")
    async def cook(raw: int) -> int:
        return raw + 1

    loop = asyncio.get_running_loop()
    with instrument(pipeline, tracing.provider):
        with tracing.tracer.start_as_current_span("first request"):
            first = asyncio.ensure_future(fetch())
        await asyncio.wait_for(started.wait(), 1)
        cooked: asyncio.Future[int] = loop.create_future()
        with tracing.tracer.start_as_current_span("second request"):
            # Subscribing demands `cooked` right here, in the second request's context.
            pipeline.observe("cooked").subscribe(
                on_next=cooked.set_result, on_error=cooked.set_exception
            )
        gate.set()  # `fetch` (the first request's) completes `cook`'s last input
        assert await asyncio.wait_for(cooked, 1) == 2
        assert await asyncio.wait_for(first, 1) == 1
    tree = tracing.tree()
    assert tree["step fetch"] == "first request"
    assert tree["step cook"] == "second request"


@settings(max_examples=40, deadline=None)
@given(cases(calls=2))
def test_each_request_traces_exactly_the_steps_it_started(
    case: tuple[Dag, dict[str, Any], list[Target]],
) -> None:
    """Generated DAGs, two concurrent requests in scopes: one span per started step, each a
    child of its own request, with that scope's id and the step's outputs."""
    dag, seeds, wanted = case
    log: Log = []
    pipeline, steps = build(dag, log)
    tracing = make_tracing()

    async def request(index: int, target: Target) -> int:
        with tracing.tracer.start_as_current_span(f"request {index}"):
            async with pipeline.scope() as scope:
                try:
                    await demand(pipeline, steps, target)
                except MissingResourceError:
                    pass
                return scope.id

    async def main() -> list[int]:
        pipeline.add_environment_resources(**seeds)
        with instrument(pipeline, tracing.provider):
            scope_ids = await asyncio.gather(*(request(i, t) for i, t in enumerate(wanted)))
        await settle(pipeline)
        return scope_ids

    scope_ids = run(main)
    provides = {node.name: node.provides for node in dag.nodes}
    spans = tracing.spans()
    for index, scope_id in enumerate(scope_ids):
        (request_span,) = [span for span in spans if span.name == f"request {index}"]
        children = [span for span in spans if parent_id(span) == span_id(request_span)]
        attributes = [dict(span.attributes or {}) for span in children]
        assert Counter(a["pipeliner_rx.step"] for a in attributes) == starts(log, scope_id)
        for span, a in zip(children, attributes, strict=True):
            step = str(a["pipeliner_rx.step"])
            assert span.name == f"step {step}"
            assert a["pipeliner_rx.scope"] == scope_id
            assert a["pipeliner_rx.provides"] == provides[step]
            assert a["pipeliner_rx.attempt"] == 1
            assert span.status.status_code is StatusCode.UNSET
    assert len(spans) == len(scope_ids) + len(log)  # no other span
    tracing.provider.shutdown()


async def test_a_live_store_run_carries_its_revision(pipeline: Pipeline, tracing: Tracing) -> None:
    @pipeline.step(provides="double")
    async def twice(x: int) -> int:
        return 2 * x

    with instrument(pipeline, tracing.provider):
        async with pipeline.live(x=1) as live:
            assert await asyncio.wait_for(live.get("double"), 5) == 2
            revision = live.push(x=2)
            assert await asyncio.wait_for(live.get("double"), 5) == 4
    revisions = [
        span.attributes["pipeliner_rx.revision"] for span in tracing.spans() if span.attributes
    ]
    assert revisions[-1] == revision and len(revisions) == 2
