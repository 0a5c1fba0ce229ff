"""Every port checks who calls: no token is UNAUTHENTICATED, a role the RPC does not admit is
PERMISSION_DENIED; health checks need no token."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360.customer.v1 import customer_service_pb2_grpc as cgrpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tgrpc
from c360_platform import auth
from c360_platform.channels import aio_channel
from c360_platform.deployment import Deployment
from tests.integration.conftest import Stack
from tests.integration.helpers import register, registration, status_of

pytestmark = pytest.mark.integration


async def test_tokens_and_roles_on_every_port(stack: Stack) -> None:
    address = stack.deployment.addresses
    anonymous = grpc.aio.insecure_channel(address["customer"])
    agent = aio_channel(address["customer"], stack.token(auth.Role.AGENT))
    integration = aio_channel(address["customer"], stack.token(auth.Role.INTEGRATION))
    stranger = Deployment.plan(stack.postgres_url, stack.nats_url)  # another secret
    forged = aio_channel(address["customer"], stranger.token(auth.Role.OPERATOR, "x"))
    agent_timeline = aio_channel(address["timeline"], stack.token(auth.Role.AGENT))
    try:
        request = registration("Anna", "anna@example.com")
        assert await status_of(cgrpc.CustomerServiceStub(anonymous).RegisterCustomer(request)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert await status_of(cgrpc.CustomerServiceStub(forged).RegisterCustomer(request)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert await status_of(
            cgrpc.CustomerServiceStub(integration).RegisterCustomer(request)
        ) == (grpc.StatusCode.PERMISSION_DENIED)
        assert stack.customer_app.head() == 0  # nothing stored by the refusals
        await register(cgrpc.CustomerServiceStub(agent), "Anna", "anna@example.com")
        assert stack.customer_app.head() == 1

        rebuild = tgrpc.TimelineServiceStub(agent_timeline).RebuildReadModel(
            tapi.RebuildReadModelRequest()
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            async for _ in rebuild:
                pass
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "role agent" in (denied.value.details() or "")

        health = await health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for channel in (anonymous, agent, integration, forged, agent_timeline):
            await channel.close(None)
