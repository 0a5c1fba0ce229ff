"""OpenTelemetry tracing from the standard OTEL_* variables; off (no-op, silent) when none is set.

Trace context travels as W3C `traceparent`/`tracestate`: in gRPC metadata, beside each stored
event, in NATS headers and in the envelope, so one trace runs from the command to the timeline.
Span attributes never carry personal data: ids of aggregates and positions only.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_configured = False


def configure(service_name: str, exporter: SpanExporter | None = None) -> bool:
    """Install a tracer provider if OTEL_* asks for one (or an exporter is given).

    OTEL_TRACES_EXPORTER=console prints spans; =otlp needs the OTLP exporter package and
    honours OTEL_EXPORTER_OTLP_ENDPOINT. Unset or "none": tracing stays off.
    """
    global _configured
    if _configured:
        return True
    processor: SimpleSpanProcessor | BatchSpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    else:
        kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if not kind and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            kind = "otlp"
        if kind in ("", "none"):
            return False
        if kind == "console":
            processor = BatchSpanProcessor(ConsoleSpanExporter())
        elif kind == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                    OTLPSpanExporter,
                )
            except ImportError:
                _log.warning("OTEL_TRACES_EXPORTER=otlp but the OTLP exporter is not installed")
                return False
            processor = BatchSpanProcessor(OTLPSpanExporter())
        else:
            _log.warning("unknown OTEL_TRACES_EXPORTER=%s; tracing stays off", kind)
            return False
    name = os.environ.get("OTEL_SERVICE_NAME", f"c360-{service_name}")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def enabled() -> bool:
    """Whether this process records spans (`configure` installed a provider)."""
    return _configured


@functools.cache
def tracer(name: str = "c360") -> trace.Tracer:
    """The named tracer, made once (`trace.get_tracer` looks the provider up in the process's
    environment on every call; before `configure` it is a proxy that follows the provider
    set later)."""
    return trace.get_tracer(name)


def current_trace_headers() -> tuple[str, str]:
    """The active span's (traceparent, tracestate), empty strings when tracing is off."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def context_from(traceparent: str, tracestate: str = "") -> otel_context.Context:
    """A parent context from W3C headers (the empty context when there are none)."""
    carrier = {"traceparent": traceparent, "tracestate": tracestate} if traceparent else {}
    return _propagator.extract(carrier)


def context_from_metadata(metadata: Mapping[str, str]) -> otel_context.Context:
    return _propagator.extract(dict(metadata))
