"""The platform's Prometheus metrics: every call counted and timed by method and status code."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, generate_latest

from c360_platform import errors, rpc

FAILING = "/c360.test.v1.Probe/Fail"


def _count(service: str, method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "c360_rpc_requests_total", {"service": service, "method": method, "code": code}
    )
    return value or 0.0


def _failing(server: grpc.aio.Server) -> None:
    async def fail(request: bytes, context: Any) -> bytes:
        raise errors.NotFound("no customer 42")

    handler = grpc.method_handlers_generic_handler(
        "c360.test.v1.Probe",
        {"Fail": grpc.unary_unary_rpc_method_handler(fail)},
    )
    server.add_generic_rpc_handlers((handler,))


async def test_calls_are_counted_and_timed_by_method_and_code() -> None:
    host = rpc.ServiceHost("metrics-probe", 0)
    host.add("c360.test.v1.Probe", _failing)
    port = await host.start()
    check = "/grpc.health.v1.Health/Check"
    before_ok = _count("metrics-probe", check, "OK")
    before_nf = _count("metrics-probe", FAILING, "NOT_FOUND")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest())
            await stub.Check(health_pb2.HealthCheckRequest())
            fail = channel.unary_unary(FAILING, lambda b: b, lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await fail(b"")
            assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await host.stop()
    assert _count("metrics-probe", check, "OK") == before_ok + 2
    assert _count("metrics-probe", FAILING, "NOT_FOUND") == before_nf + 1
    histogram = REGISTRY.get_sample_value(
        "c360_rpc_duration_seconds_count",
        {"service": "metrics-probe", "method": FAILING, "code": "NOT_FOUND"},
    )
    assert histogram is not None
    assert histogram >= 1
    text = generate_latest(REGISTRY).decode()
    assert "c360_relay_lag_events" in text
    assert "c360_projector_lag_messages" in text
