"""One trace from the gRPC command through append, publish and projection."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import telemetry

from .conftest import Stack
from .helpers import eventually, registration

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    if not telemetry.configure("tests", exporter=exporter):
        pytest.skip("a tracer provider was installed before this module")
    return exporter


async def test_one_trace_runs_from_the_command_to_the_timeline(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    reply = await stack.customer.RegisterCustomer(
        registration("Ada Lovelace", "ada@example.com"),
        metadata=(("traceparent", CALLER),),
    )
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
        ),
        timeout=10,
    )

    def in_trace() -> set[str]:
        finished = spans.get_finished_spans()
        return {s.name for s in finished if format(s.context.trace_id, "032x") == TRACE_ID}

    async def projected() -> bool:
        # The projector ends its span once its thread's commit returns to the event loop: a
        # reader woken by the commit can answer a moment before.
        return "project c360.events.v1.CustomerRegistered" in in_trace()

    await eventually(projected, timeout=5, what="the projector's span")
    assert "/c360.customer.v1.CustomerService/RegisterCustomer" in in_trace()
    assert "publish c360.customer.customer.registered" in in_trace()
    finished = spans.get_finished_spans()
    for span in finished:
        for value in (span.attributes or {}).values():
            assert "ada@example.com" not in str(value)
            assert "Lovelace" not in str(value)
