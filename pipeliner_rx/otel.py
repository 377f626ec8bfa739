"""OpenTelemetry tracing: one span per step attempt, a child of the request that demanded it.

Needs the ``otel`` extra (``pip install "pipeliner_rx[otel]"``, i.e. ``opentelemetry-api``);
spans go wherever the tracer provider sends them (configure it with ``opentelemetry-sdk``).

Example:
    >>> from pipeliner_rx.otel import instrument
    >>> instrumentation = instrument(pipeline)  # the global tracer provider
    >>> with tracer.start_as_current_span("GET /division"):
    ...     await get_division(divisor=3)  # spans `step divide`, `step mod`, ... under it
    >>> instrumentation.uninstrument()

Each attempt of a step gets a span named ``step <name>`` with the attributes
``pipeliner_rx.step``, ``pipeliner_rx.provides``, ``pipeliner_rx.scope`` (0 for the pipeline's
own store, else the scope's id), ``pipeliner_rx.attempt`` (from 1; see ``retries``) and, in a
live store, ``pipeliner_rx.revision``. Its parent
is the span that was current where the step was demanded: the caller's request span, or the
span of the step whose body made the demand. While the step runs its span is the current one, so
spans made inside it (an HTTP client's, a database driver's, your own) are its children, also
in a plain ``def`` step on a thread pool. A failed attempt records the exception and has status
ERROR; a cancelled one (nobody needed it any more, or its caller went away) has the attribute
``pipeliner_rx.cancelled``, an event ``cancelled`` and status ERROR with description
``cancelled``. Steps whose outputs were present (``skipped``) get no span.

Tracing is built on `Pipeline.events`: without an instrumentation nothing listens and nothing
is paid.
"""

from __future__ import annotations

import contextvars
import itertools
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "`pipeliner_rx.otel` needs OpenTelemetry's API: install it with "
        '`pip install "pipeliner_rx[otel]"` (or `pip install opentelemetry-api`).'
    ) from exc

from . import __version__
from ._events import StepEvent

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["Instrumentation", "instrument"]

_ids = itertools.count()


@dataclass(eq=False, slots=True)
class _Attempt:
    """An open span: the attempt it belongs to, and the token that made it current."""

    step: str
    scope: int
    attempt: int
    span: trace.Span
    token: contextvars.Token[otel_context.Context]


class Instrumentation:
    """Spans for the steps of one pipeline, until `uninstrument` (or the end of a ``with``).

    Made by `instrument`. Attempts already running when it is uninstrumented still end their
    spans; then it stops listening to the pipeline's events.

    Attributes:
        pipeline: the instrumented pipeline.
    """

    def __init__(
        self, pipeline: Pipeline, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.pipeline = pipeline
        self._tracer = trace.get_tracer(
            "pipeliner_rx", __version__, tracer_provider=tracer_provider
        )
        # The attempt whose span is current, per step task (each task has its own context).
        self._current: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
            f"pipeliner_rx_otel_{next(_ids)}", default=None
        )
        self._open: set[_Attempt] = set()
        self._provides: dict[str, tuple[str, ...]] = {}
        self._stopping = False
        self._subscription = pipeline.events.subscribe(self._on_event)

    def __repr__(self) -> str:
        state = "uninstrumented" if self._stopping else "active"
        return f"<Instrumentation of {self.pipeline!r} ({state})>"

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstrument()

    def uninstrument(self) -> None:
        """Start no more spans; stop listening once the attempts running now have ended theirs.

        Calling it again does nothing.
        """
        self._stopping = True
        if not self._open:
            self._subscription.dispose()

    # -- events -------------------------------------------------------------------------------

    def _on_event(self, event: StepEvent) -> None:
        # Called in the step's own task (the engine emits from there), whose context descends
        # from the demand's: the current span there is the parent, and attaching the step's
        # span makes it the parent of whatever the step does.
        kind = event.kind
        if kind == "started":
            if not self._stopping:
                self._start(event)
            return
        if kind == "skipped":
            return
        attempt = self._current.get()
        if attempt is None or (attempt.step, attempt.scope, attempt.attempt) != (
            event.step,
            event.scope,
            event.attempt,
        ):
            return  # not an attempt this instrumentation saw start
        span = attempt.span
        if kind == "failed":
            if event.error is not None:
                span.record_exception(event.error)
                text = f"{type(event.error).__name__}: {event.error}"
            else:
                text = "failed"
            span.set_status(trace.Status(trace.StatusCode.ERROR, text))
        elif kind == "cancelled":
            span.set_attribute("pipeliner_rx.cancelled", True)
            span.add_event("cancelled")
            span.set_status(trace.Status(trace.StatusCode.ERROR, "cancelled"))
        self._end(attempt)

    def _start(self, event: StepEvent) -> None:
        attributes: dict[str, Any] = {
            "pipeliner_rx.step": event.step,
            "pipeliner_rx.provides": self._outputs(event.step),
            "pipeliner_rx.scope": event.scope,
            "pipeliner_rx.attempt": event.attempt,
        }
        if event.revision is not None:  # a run of a live store
            attributes["pipeliner_rx.revision"] = event.revision
        span = self._tracer.start_span(
            f"step {event.step}", kind=trace.SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        attempt = _Attempt(event.step, event.scope, event.attempt, span, token)
        self._open.add(attempt)
        self._current.set(attempt)

    def _end(self, attempt: _Attempt) -> None:
        # Detached before the step's outputs complete (the engine emits the event first), so
        # the steps those outputs wake up do not inherit this span as their parent.
        self._current.set(None)
        otel_context.detach(attempt.token)
        attempt.span.end()
        self._open.discard(attempt)
        if self._stopping and not self._open:
            self._subscription.dispose()

    def _outputs(self, name: str) -> tuple[str, ...]:
        provides = self._provides.get(name)
        if provides is None:
            # Steps registered since the last lookup; events carry names, not steps.
            self._provides = {step.name: step.provides for step in self.pipeline.steps}
            provides = self._provides.get(name, ())
        return provides


def instrument(
    pipeline: Pipeline, tracer_provider: trace.TracerProvider | None = None
) -> Instrumentation:
    """Trace ``pipeline``'s steps with OpenTelemetry: one span per attempt (module docstring).

    Args:
        pipeline: the pipeline whose steps to trace.
        tracer_provider: where the spans go; None for OpenTelemetry's global provider.

    Returns:
        The `Instrumentation`; call its `~Instrumentation.uninstrument`, or use it as a
        context manager, to stop.

    Example:
        >>> with instrument(pipeline, tracer_provider=provider):
        ...     await get_division(divisor=3)
    """
    return Instrumentation(pipeline, tracer_provider)
