"""Outages and restarts: while PostgreSQL is down every RPC answers UNAVAILABLE (not INTERNAL,
not a hang to the deadline) and everything recovers by itself when it is back; a timeline
replica started under load disturbs nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import psycopg
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tgrpc
from c360_platform import auth, registry
from c360_platform.channels import aio_channel
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedPostgres
from c360_platform.processes import wait_pid_gone
from c360_platform.supervisor import stop_hosts
from tests.integration.conftest import Stack, open_stack
from tests.integration.helpers import eventually, register, status_of

pytestmark = pytest.mark.integration

DEADLINE = 20.0


async def test_postgres_down_is_unavailable_and_everything_recovers_after(
    tmp_path: Path, fresh_nats_url: str
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = pg.start()
    try:
        async with open_stack(url, fresh_nats_url) as stack:
            before = await register(stack.customer, "Before Outage", "before@example.com")
            first = before.result.aggregate_id
            await stack.timeline.GetTimeline(
                tapi.GetTimelineRequest(
                    customer_id=first, wait_for=before.result.consistency_token
                ),
                timeout=DEADLINE,
            )

            assert pg.pid is not None
            os.kill(pg.pid, signal.SIGKILL)
            assert pg.exited() is not None or wait_pid_gone(pg.pid, 10)

            # Reads, commands and queries of the service's own tables: UNAVAILABLE, each
            # answered well before the caller's deadline.
            started = time.monotonic()
            read = stack.timeline.GetTimeline(
                tapi.GetTimelineRequest(customer_id=first), timeout=DEADLINE
            )
            assert await status_of(read) == grpc.StatusCode.UNAVAILABLE
            write = register(stack.customer, "During Outage", "during@example.com")
            assert await status_of(write) == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < DEADLINE

            assert pg.start() == url  # same data, same port
            # Back: reads answer again, a command is stored, and the projector shows it.
            after = None
            refusals: set[grpc.StatusCode] = set()

            async def accepted() -> bool:
                nonlocal after
                try:
                    after = await register(stack.customer, "After Outage", "after@example.com")
                except grpc.aio.AioRpcError as error:
                    refusals.add(error.code())
                    return False
                return True

            await eventually(accepted, timeout=30, what="a command after the restart")
            assert refusals <= {grpc.StatusCode.UNAVAILABLE}
            assert after is not None
            shown = await stack.timeline.GetTimeline(
                tapi.GetTimelineRequest(
                    customer_id=after.result.aggregate_id,
                    wait_for=after.result.consistency_token,
                ),
                timeout=DEADLINE,
            )
            assert [e.type for e in shown.entries] == ["customer.registered"]
            again = await stack.timeline.GetTimeline(
                tapi.GetTimelineRequest(customer_id=first), timeout=DEADLINE
            )
            assert len(again.entries) == 1
    finally:
        pg.stop()


def test_stale_lock_files_of_a_dead_postmaster_are_cleared_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = pg.start()
    try:
        # A live server's lock files are never touched.
        EmbeddedPostgres(tmp_path / "pg").clear_stale_locks()
        assert (pg.pgdata / "postmaster.pid").exists()
        assert pg.pid is not None
        os.kill(pg.pid, signal.SIGKILL)
        assert pg.exited() is not None or wait_pid_gone(pg.pid, 10)
        # After the crash its pid is taken by an unrelated live process of the server's own
        # account (as after a reboot): PostgreSQL alone would refuse to start ("lock file
        # already exists").
        options = pg.spawn_options()
        options.pop("cwd", None)
        squatter = subprocess.Popen(["sleep", "60"], **options)
        try:
            pid_file = pg.pgdata / "postmaster.pid"
            lines = pid_file.read_text().splitlines()
            pid_file.write_text("\n".join([str(squatter.pid), *lines[1:]]) + "\n")
            for lock in pg.socket_dir.glob(".s.PGSQL.*.lock"):
                rest = lock.read_text().splitlines()[1:]
                lock.write_text("\n".join([str(squatter.pid), *rest]) + "\n")
            assert pg.start() == url
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert squatter.poll() is None  # and the unrelated process lives on
        finally:
            squatter.kill()
            squatter.wait()
    finally:
        pg.stop()


async def test_a_timeline_replica_started_under_load_disturbs_no_projector(
    stack: Stack, database_url: str, fresh_nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    done = asyncio.Event()
    replies: list[capi.RegisterCustomerResponse] = []

    async def load(writer: int) -> None:
        n = 0
        while not done.is_set():
            n += 1
            name, email = f"Load {writer}-{n}", f"load{writer}-{n}@example.com"
            replies.append(await register(stack.customer, name, email))

    writers = asyncio.gather(*(load(w) for w in range(8)))
    try:
        await eventually(lambda: _at_least(replies, 5), what="load")
        # Replicas start (schema check, projector standing by, query API up) and stop while
        # the active projector writes, as a rolling deploy would do.
        replica = Deployment.plan(
            database_url,
            fresh_nats_url,
            fresh_ports=True,
            signing_key=stack.deployment.signing_key,
        )
        # The replica finds the other services where the deployment runs them.
        settings = dataclasses.replace(
            replica.settings("timeline"),
            services={**stack.deployment.addresses, "timeline": replica.addresses["timeline"]},
        )
        for _ in range(5):
            host = registry.service(registry.TIMELINE).builder()(settings)
            await host.start()
            channel = aio_channel(
                replica.addresses[registry.TIMELINE], stack.token(auth.Role.AGENT)
            )
            try:
                seen = await tgrpc.TimelineServiceStub(channel).GetTimeline(
                    tapi.GetTimelineRequest(
                        customer_id=replies[0].result.aggregate_id,
                        wait_for=replies[0].result.consistency_token,
                    ),
                    timeout=DEADLINE,
                )
                assert [e.type for e in seen.entries] == ["customer.registered"]
            finally:
                await channel.close(None)
            await stop_hosts({"timeline": host})
    finally:
        done.set()
        await writers
    last = replies[-1].result
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=last.aggregate_id, wait_for=last.consistency_token),
        timeout=DEADLINE,
    )
    for reply in replies:  # every command projected exactly once
        shown = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id), timeout=DEADLINE
        )
        assert [e.type for e in shown.entries] == ["customer.registered"]
    # c360's own warnings and errors (the projector's failures among them); other tests'
    # clients of servers already gone may log in the same session.
    troubles = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("c360")
    ]
    assert troubles == []


async def _at_least(items: Sequence[object], n: int) -> bool:
    return len(items) >= n
