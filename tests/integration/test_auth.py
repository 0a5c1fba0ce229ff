"""Every port checks who calls: no token is UNAUTHENTICATED, a role the RPC does not admit is
PERMISSION_DENIED; health checks need no token."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as cgrpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tgrpc
from c360_platform import audit, auth, registry
from c360_platform.channels import aio_channel
from c360_platform.config import Settings
from c360_platform.deployment import Deployment
from c360_platform.supervisor import Supervisor, stop_hosts
from tests.integration.conftest import Stack
from tests.integration.helpers import eventually, register, registration, status_of

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


async def test_the_audit_trail_names_who_called_which_record_and_who_was_refused(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="c360.audit")
    address = stack.deployment.addresses["customer"]
    agent = aio_channel(address, stack.deployment.token(auth.Role.AGENT, "app:desk-7"))
    try:
        stub = cgrpc.CustomerServiceStub(agent)
        ada = await register(stub, "Ada Audita", "ada.audita@example.com")
        cid = ada.result.aggregate_id
        await stub.GetCustomer(capi.GetCustomerRequest(customer_id=cid))
        # Whatever is typed where an id belongs is not written down (it may be a person's).
        typed = capi.GetCustomerRequest(customer_id="ada.audita@example.com")
        assert await status_of(stub.GetCustomer(typed)) == grpc.StatusCode.INVALID_ARGUMENT
        forget = stub.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=cid))
        assert await status_of(forget) == grpc.StatusCode.PERMISSION_DENIED
        await asyncio.sleep(audit.FLUSH_EVERY + 0.5)
    finally:
        await agent.close(None)
    lines = [r.getMessage() for r in caplog.records if r.name == "c360.audit"]
    get = "/c360.customer.v1.CustomerService/GetCustomer"
    assert f"{get} by app:desk-7 (agent) on customer_id={cid}" in lines
    assert f"{get} by app:desk-7 (agent) on customer_id=?" in lines
    forget_path = "/c360.customer.v1.CustomerService/ForgetCustomer"
    assert any(
        line.startswith(f"refused {forget_path} by app:desk-7: role agent") for line in lines
    )
    assert not any("ada.audita" in line or "Audita" in line for line in lines)


async def test_services_started_as_c360_up_starts_them_hold_no_signing_material_and_still_call(
    database_url: str, fresh_nats_url: str, tmp_path: Path
) -> None:
    """The customer and timeline services as processes (the Supervisor of `c360 up`): their
    environment holds the public key and a token each, neither the signing key nor a secret;
    the timeline still asks the customer service for a customer's keys (GetDataKeys, role
    service) to show the profile."""
    deployment = Deployment.plan(
        database_url,
        fresh_nats_url,
        fresh_ports=True,
        specs={name: registry.service(name) for name in ("customer", "timeline")},
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    supervisor = Supervisor(deployment, tmp_path, environment=base)
    supervisor.start()
    try:
        envs = {name: p.env for name, p in supervisor.processes.items()}
        assert set(envs) == {"customer", "timeline"}
        for name, env in envs.items():
            assert auth.SECRET_ENV not in env, name
            assert not any("PRIVATE KEY" in value for value in env.values()), name
            assert env[auth.PUBLIC_KEY_ENV].startswith("-----BEGIN PUBLIC KEY-----"), name
            assert env["C360_TOKEN"].startswith("c360."), name
        ready = await asyncio.to_thread(supervisor.wait_ready, threading.Event(), 90.0)
        assert ready, (tmp_path / "timeline.log").read_text()[-4000:]
        addresses = deployment.addresses
        agent_customer = aio_channel(addresses["customer"], deployment.token(auth.Role.AGENT, "a"))
        agent_timeline = aio_channel(addresses["timeline"], deployment.token(auth.Role.AGENT, "a"))
        try:
            reply = await register(
                cgrpc.CustomerServiceStub(agent_customer), "Ada Keyed", "ada.keyed@example.com"
            )
            cid = reply.result.aggregate_id
            profile = await tgrpc.TimelineServiceStub(agent_timeline).GetProfile(
                tapi.GetProfileRequest(customer_id=cid, wait_for=reply.result.consistency_token),
                timeout=30,
            )
        finally:
            await agent_customer.close(None)
            await agent_timeline.close(None)
        # Shown in the clear: the timeline's key request was admitted.
        assert profile.profile.display_name == "Ada Keyed"
        assert list(profile.profile.emails) == ["ada.keyed@example.com"]

        async def key_request_logged() -> bool:
            log = (tmp_path / "customer.log").read_text()
            return "GetDataKeys by service:timeline (service)" in log

        await eventually(key_request_logged, timeout=audit.FLUSH_EVERY + 10, what="audit")
    finally:
        await asyncio.to_thread(supervisor.stop)


@dataclasses.dataclass(frozen=True)
class MidMove(Deployment):
    """A deployment halfway through the move to the key pair (deploy/README.md): every
    service still has the shared secret and the public key; the timeline has no token of its
    own yet (it signs one with the secret, as every pod did before: config._own_token), the
    customer service has one of the key pair."""

    def settings(self, name: str) -> Settings:
        made = super().settings(name)
        if name != "timeline":
            return made
        own = auth.issue_with_secret(self.auth_secret, "service:timeline", auth.Role.SERVICE)
        return dataclasses.replace(made, token=own)


async def test_a_deployment_moving_to_the_key_pair_keeps_working_with_both_kinds_of_token(
    database_url: str, fresh_nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    secret = auth.new_secret()
    planned = Deployment.plan(
        database_url,
        fresh_nats_url,
        fresh_ports=True,
        specs={name: registry.service(name) for name in ("customer", "timeline")},
        auth_secret=secret,
    )
    deployment = MidMove(**{f.name: getattr(planned, f.name) for f in dataclasses.fields(planned)})
    assert "C360_AUTH_SECRET" in deployment.environment("timeline")
    hosts = await Supervisor(deployment, Path(os.devnull)).start_hosts()
    old = auth.issue_with_secret(secret, "app:old-crm", auth.Role.AGENT)
    new = deployment.token(auth.Role.AGENT, "app:new-crm")
    customer = aio_channel(deployment.addresses["customer"], old)
    timeline = aio_channel(deployment.addresses["timeline"], new)
    try:
        reply = await register(cgrpc.CustomerServiceStub(customer), "Mia Move", "mia@example.com")
        # The timeline (its own HMAC token) asks the customer service (which checks both) for
        # the customer's keys: the profile shows her name.
        profile = await tgrpc.TimelineServiceStub(timeline).GetProfile(
            tapi.GetProfileRequest(
                customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
            ),
            timeout=30,
        )
        assert profile.profile.display_name == "Mia Move"
    finally:
        await customer.close(None)
        await timeline.close(None)
        await stop_hosts(hosts)
    assert "C360_AUTH_SECRET is set" in caplog.text  # each says how to move on
