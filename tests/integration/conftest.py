"""Integration fixtures: a fresh nats-server per test and the services running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import pytest
import pytest_asyncio

from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.service_desk.v1 import service_desk_service_pb2_grpc as desk_grpc
from c360.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from c360_customer.application import CustomerApplication
from c360_customer.service import build as build_customer
from c360_platform.config import Settings
from c360_platform.embedded import EmbeddedNats
from c360_platform.relay import OutboxRelay
from c360_platform.rpc import ServiceHost
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.service import build as build_service_desk
from c360_timeline.projector import Projector
from c360_timeline.service import build as build_timeline


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
    """The customer, timeline and service-desk services in this process, and clients for them."""

    postgres_url: str
    nats_url: str
    customer_host: ServiceHost
    timeline_host: ServiceHost
    app: CustomerApplication
    relay: OutboxRelay
    projector: Projector
    customer: customer_grpc.CustomerServiceAsyncStub
    timeline: timeline_grpc.TimelineServiceAsyncStub
    channels: list[grpc.aio.Channel]
    service_desk_host: ServiceHost
    desk_app: ServiceDeskApplication
    desk_relay: OutboxRelay
    service_desk: desk_grpc.ServiceDeskServiceAsyncStub


@pytest_asyncio.fixture
async def stack(database_url: str, fresh_nats_url: str) -> AsyncIterator[Stack]:
    async with open_stack(database_url, fresh_nats_url) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_stack(database_url: str, fresh_nats_url: str) -> AsyncIterator[Stack]:
    """The three services in this process on one database and nats-server, until exit."""
    customer_host, app, relay = build_customer(
        Settings("customer", database_url, fresh_nats_url, "127.0.0.1", 0, "")
    )
    customer_port = await customer_host.start()
    # The timeline reads what the stream no longer holds from the customer's store.
    services = {"customer": f"127.0.0.1:{customer_port}"}
    timeline_host, projector = build_timeline(
        Settings("timeline", database_url, fresh_nats_url, "127.0.0.1", 0, "", services)
    )
    timeline_port = await timeline_host.start()
    desk_host, desk_app, desk_relay = build_service_desk(
        Settings(
            "service-desk",
            database_url,
            fresh_nats_url,
            "127.0.0.1",
            0,
            f"127.0.0.1:{timeline_port}",
        )
    )
    desk_port = await desk_host.start()
    c1 = grpc.aio.insecure_channel(f"127.0.0.1:{customer_port}")
    c2 = grpc.aio.insecure_channel(f"127.0.0.1:{timeline_port}")
    c3 = grpc.aio.insecure_channel(f"127.0.0.1:{desk_port}")
    try:
        yield Stack(
            database_url,
            fresh_nats_url,
            customer_host,
            timeline_host,
            app,
            relay,
            projector,
            customer_grpc.CustomerServiceStub(c1),
            timeline_grpc.TimelineServiceStub(c2),
            [c1, c2, c3],
            desk_host,
            desk_app,
            desk_relay,
            desk_grpc.ServiceDeskServiceStub(c3),
        )
    finally:
        for channel in (c1, c2, c3):
            await channel.close(None)
        # Each host drains for up to a second: stop them side by side.
        await asyncio.gather(desk_host.stop(), customer_host.stop(), timeline_host.stop())
        app.close()
        desk_app.close()
