"""Tracing as users write it; checked, never run (see user_steps.py)."""

from __future__ import annotations

from typing import assert_type

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from pipeliner_rx import Pipeline
from pipeliner_rx.otel import Instrumentation, instrument

pipeline = Pipeline()


@pipeline.step(provides="total")
async def add(x: int, y: int) -> int:
    return x + y


async def traced_request() -> int:
    tracer = trace.get_tracer("my.service")
    with instrument(pipeline, tracer_provider=TracerProvider()) as instrumentation:
        assert_type(instrumentation, Instrumentation)
        with tracer.start_as_current_span("GET /total"):
            return await add(x=1, y=2)


instrumentation = instrument(pipeline)
assert_type(instrumentation.pipeline, Pipeline)
instrumentation.uninstrument()
instrument(pipeline, tracer_provider="console")  # type: ignore[arg-type]
instrument(add)  # type: ignore[arg-type]
