"""Integration fixtures: a fresh nats-server per test and the services running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.service_desk.v1 import service_desk_service_pb2_grpc as desk_grpc
from c360.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from c360_customer.application import CustomerApplication
from c360_platform import auth
from c360_platform.channels import aio_channel
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedNats
from c360_platform.rpc import ServiceHost
from c360_platform.store import ServiceApplication
from c360_platform.supervisor import Supervisor, stop_hosts
from c360_service_desk.application import ServiceDeskApplication
from c360_timeline.projector import Projector

S = TypeVar("S")


@pytest_asyncio.fixture
async def session_nc(nats_url: str) -> AsyncIterator[NATS]:
    """A client of the session's nats-server (tests that make streams of their own there)."""
    client = await nats.connect(nats_url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


@pytest.fixture
def fresh_nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own (stream names are per server).

    With NATS_URL set, that server is used and its C360 stream is deleted first: point
    NATS_URL only at a disposable server when running the tests.
    """
    external = os.environ.get("NATS_URL")
    if external:

        async def reset() -> None:
            nc = await nats.connect(external)
            with contextlib.suppress(Exception):  # absent already
                await nc.jetstream().delete_stream("C360")
            await nc.close()

        asyncio.run(reset())
        yield external
        return
    server = EmbeddedNats(tmp_path / "nats")
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class Stack:
    """Every registered service in this process (one host each, on ports chosen up front,
    started from the same `Deployment` as `c360 up`), and channels to each."""

    postgres_url: str
    nats_url: str
    hosts: dict[str, ServiceHost]
    channels: dict[str, grpc.aio.Channel]
    """Channels whose calls carry an operator's token (every RPC admits it)."""
    deployment: Deployment

    def token(self, role: auth.Role) -> str:
        return self.deployment.token(role, f"test:{role}")

    def stub(self, service: str, kind: Callable[[grpc.aio.Channel], S]) -> S:
        """An asyncio stub of `kind` for the named service."""
        return kind(self.channels[service])

    def app(self, service: str) -> ServiceApplication:
        return self.hosts[service].part("app", ServiceApplication)

    # Shorthands for the services these tests exercise most.
    @property
    def customer(self) -> customer_grpc.CustomerServiceAsyncStub:
        return self.stub("customer", customer_grpc.CustomerServiceStub)

    @property
    def timeline(self) -> timeline_grpc.TimelineServiceAsyncStub:
        return self.stub("timeline", timeline_grpc.TimelineServiceStub)

    @property
    def service_desk(self) -> desk_grpc.ServiceDeskServiceAsyncStub:
        return self.stub("service-desk", desk_grpc.ServiceDeskServiceStub)

    @property
    def customer_app(self) -> CustomerApplication:
        return self.hosts["customer"].part("app", CustomerApplication)

    @property
    def desk_app(self) -> ServiceDeskApplication:
        return self.hosts["service-desk"].part("app", ServiceDeskApplication)

    @property
    def projector(self) -> Projector:
        return self.hosts["timeline"].part("projector", Projector)


@pytest_asyncio.fixture
async def stack(database_url: str, fresh_nats_url: str) -> AsyncIterator[Stack]:
    async with open_stack(database_url, fresh_nats_url) as opened:
        yield opened


PORT_ATTEMPTS = 3
"""Stacks planned again when a port picked free was taken before its host bound it."""


@contextlib.asynccontextmanager
async def open_stack(
    database_url: str,
    fresh_nats_url: str,
    postgres_url_for: Callable[[str], str] | None = None,
    signing_key: auth.SigningKey | None = None,
) -> AsyncIterator[Stack]:
    """Every registered service in this process on one database and nats-server, until exit
    (started by the platform's supervisor, from the same `Deployment` as `c360 up`)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        deployment = Deployment.plan(
            database_url,
            fresh_nats_url,
            fresh_ports=True,
            postgres_url_for=postgres_url_for,
            signing_key=signing_key,
        )
        try:
            hosts = await Supervisor(deployment, Path(os.devnull)).start_hosts()
            break
        except RuntimeError as exc:
            # Ports are picked free before the hosts bind them, one after another; another
            # test worker's stack or nats-server may bind one in between (CI38). The hosts
            # started are stopped already: plan again.
            if "Failed to bind" not in str(exc) or attempt == PORT_ATTEMPTS:
                raise
    operator = deployment.token(auth.Role.OPERATOR, "test:operator")
    channels = {
        name: aio_channel(address, operator) for name, address in deployment.addresses.items()
    }
    try:
        yield Stack(database_url, fresh_nats_url, hosts, channels, deployment)
    finally:
        for channel in channels.values():
            await channel.close(None)
        await stop_hosts(hosts)
