"""C360_WORKERS=2: a service as two processes on one port (SO_REUSEPORT). Both serve calls;
the relay still runs in one of them only; SIGTERM stops both."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path

import nats
import pytest

from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360_platform import auth, registry
from c360_platform.channels import aio_channel
from c360_platform.deployment import Deployment
from c360_platform.processes import pid_alive
from c360_platform.supervisor import Supervisor
from tests.integration.helpers import eventually, registration

pytestmark = pytest.mark.integration

CHANNELS = 16
"""Connections stay with the worker that accepted them: many, so both get some."""
CUSTOMERS = 64


async def test_two_workers_share_the_port_and_one_relay(
    database_url: str, fresh_nats_url: str, tmp_path: Path
) -> None:
    deployment = Deployment.plan(
        database_url,
        fresh_nats_url,
        fresh_ports=True,
        specs={"customer": registry.service("customer")},
    )
    supervisor = Supervisor(deployment, tmp_path, environment={**os.environ, "C360_WORKERS": "2"})
    supervisor.start()
    log = tmp_path / "customer.log"
    try:
        ready = await asyncio.to_thread(supervisor.wait_ready, threading.Event(), 60.0)
        assert ready, log.read_text()[-4000:] if log.exists() else "no log"
        token = deployment.token(auth.Role.OPERATOR, "test:operator")
        address = deployment.addresses["customer"]
        # A channel argument of its own keeps each channel on a connection of its own.
        channels = [
            aio_channel(address, token, options=[("c360.test.channel", i)]) for i in range(CHANNELS)
        ]
        try:
            stubs = [customer_grpc.CustomerServiceStub(c) for c in channels]
            replies = await asyncio.gather(
                *(
                    stubs[i % CHANNELS].RegisterCustomer(
                        registration(f"Worker Test {i}", f"w{i}@example.com", f"w-{i}")
                    )
                    for i in range(CUSTOMERS)
                )
            )
        finally:
            for channel in channels:
                await channel.close(None)
        assert len({r.result.aggregate_id for r in replies}) == CUSTOMERS

        nc = await nats.connect(fresh_nats_url)
        try:
            js = nc.jetstream()

            async def all_published() -> bool:
                try:
                    info = await js.stream_info("C360")
                except Exception:  # not created yet
                    return False
                return bool(info.state.messages >= CUSTOMERS)

            await eventually(all_published, timeout=30, what="the relay to publish")
            await asyncio.sleep(1.0)  # a second relay would publish more meanwhile
            assert (await js.stream_info("C360")).state.messages == CUSTOMERS
        finally:
            await nc.close()

        text = log.read_text()
        serving = set(re.findall(r"\[worker (\d) pid (\d+)\] \S+: customer serving on", text))
        assert len(serving) == 2, text[-3000:]
        # Both workers answered calls (the audit log names the worker of each call).
        answered = set(re.findall(r"\[worker \d pid (\d+)\] c360\.audit: .*RegisterCustomer", text))
        assert answered == {pid for _, pid in serving}
        # The relay's lock was taken once: one worker relays, the other stands by.
        taken = re.findall(r"\[worker \d pid (\d+)\] \S+: acquired lock (\S+)", text)
        names = [name for _, name in taken]
        assert names, text[-3000:]
        assert len(names) == len(set(names)), taken
    finally:
        pids = {int(pid) for _, pid in re.findall(r"\[worker (\d) pid (\d+)\]", log.read_text())}
        supervisor.stop()
    assert supervisor.processes["customer"].exited() == 0
    assert not any(pid_alive(pid) for pid in pids)
