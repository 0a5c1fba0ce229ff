"""The metrics operators read, on the real PostgreSQL and nats-server: the relay's and the
projector's lock and lag, dead letters, and the /metrics endpoint."""

from __future__ import annotations

import urllib.request
from typing import Any

import grpc
from prometheus_client import REGISTRY

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import metrics
from c360_platform.processes import free_port
from c360_platform.relay import OutboxRelay
from tests.integration.conftest import Stack
from tests.integration.helpers import eventually, register, status_of


def _value(name: str, **labels: str) -> Any:
    return REGISTRY.get_sample_value(name, labels)


async def test_relay_and_projector_report_their_locks_and_catch_up(stack: Stack) -> None:
    relay = stack.hosts["customer"].part("relay", OutboxRelay)
    ids = []
    for n in range(3):
        reply = await register(stack.customer, f"Metric Customer {n}", f"metric{n}@example.com")
        ids.append(reply.result.aggregate_id)

    async def timeline_has_all() -> bool:
        for customer_id in ids:
            request = tapi.GetTimelineRequest(customer_id=customer_id)
            if await status_of(stack.timeline.GetTimeline(request)) != grpc.StatusCode.OK:
                return False  # NOT_FOUND: not projected yet
        return True

    await eventually(timeline_has_all, what="the timeline to show the customers")
    await eventually(lambda: _sampled(relay, stack), what="no lag in the metrics")
    assert _value("c360_relay_active", source="customer") == 1
    assert _value("c360_projector_active", consumer="timeline") == 1
    assert _value("c360_dead_letters") == 0
    register_ok = _value(
        "c360_rpc_requests_total",
        service="customer",
        method="/c360.customer.v1.CustomerService/RegisterCustomer",
        code="OK",
    )
    assert register_ok is not None
    assert register_ok >= 3


async def _sampled(relay: OutboxRelay, stack: Stack) -> bool:
    await metrics.sample_relay(relay)
    await metrics.sample_projector(stack.projector)
    relay_lag = _value("c360_relay_lag_events", source="customer")
    projector_lag = _value("c360_projector_lag_messages", consumer="timeline")
    return bool(relay_lag == 0 and projector_lag == 0)


def test_the_endpoint_serves_the_prometheus_text_format() -> None:
    port = free_port()
    server = metrics.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
    assert "# TYPE c360_rpc_requests_total counter" in text
    assert "# TYPE c360_rpc_duration_seconds histogram" in text
