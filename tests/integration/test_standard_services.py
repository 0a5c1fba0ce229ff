"""The standard gRPC services every c360 port serves, and how it answers what is not a
request at all."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from tests.integration.conftest import Stack
from tests.integration.helpers import bad_fields

pytestmark = pytest.mark.integration


async def test_health_list_and_reflection_v1_and_v1alpha(stack: Stack) -> None:
    channel = stack.channels["customer"]
    listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    assert listed.statuses["c360.customer.v1.CustomerService"].status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    for version in ("v1", "v1alpha"):
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        call = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for reply in call:
            names |= {s.name for s in reply.list_services_response.service}
        assert "c360.customer.v1.CustomerService" in names, version


async def test_an_undecodable_body_is_invalid_argument_without_a_traceback(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    register = stack.channels["customer"].unary_unary(
        "/c360.customer.v1.CustomerService/RegisterCustomer",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(b"\xff\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["request"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert stack.customer_app.head() == 0
