"""`make failover`: two complete sets of service processes on one PostgreSQL and one NATS (as
two pods per Deployment would run), load on the second set, then kill -9 of the first set's
processes that hold the active relays and the projector; prints the time from the kill to the
first command of the survivors visible in the timeline, per round."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as cgrpc
from c360.events.v1 import customer_events_pb2 as cev
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tgrpc
from c360_platform import auth, registry
from c360_platform.channels import aio_channel
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedRuntime
from c360_platform.processes import free_port
from c360_platform.supervisor import Supervisor


async def visible_after_kill(first: Supervisor, second: Deployment, token: str) -> float:
    """Kill -9 `first`'s processes (relays and projector active there), then register through
    `second` until one registration is in `second`'s timeline; seconds from the kill."""
    channel = aio_channel(second.addresses["customer"], token)
    timeline = aio_channel(second.addresses[registry.TIMELINE], token)
    try:
        customers = cgrpc.CustomerServiceStub(channel)
        reads = tgrpc.TimelineServiceStub(timeline)
        done = asyncio.Event()

        async def load() -> None:  # writers on the survivors, through the kill
            while not done.is_set():
                try:
                    await customers.RegisterCustomer(
                        capi.RegisterCustomerRequest(
                            request_id=str(uuid.uuid4()),
                            kind=cev.CUSTOMER_KIND_PERSON,
                            display_name="Failover load",
                        ),
                        timeout=5,
                    )
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)

        writers = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(2.0)
        for pid in first.pids().values():
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            reply = await customers.RegisterCustomer(
                capi.RegisterCustomerRequest(
                    request_id=str(uuid.uuid4()),
                    kind=cev.CUSTOMER_KIND_PERSON,
                    display_name="Failover probe",
                ),
                timeout=5,
            )
            try:
                await reads.GetTimeline(
                    tapi.GetTimelineRequest(
                        customer_id=reply.result.aggregate_id,
                        wait_for=reply.result.consistency_token,
                    ),
                    timeout=2,
                )
                done.set()
                await asyncio.gather(*writers)
                return time.monotonic() - killed
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
    finally:
        await channel.close(None)
        await timeline.close(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make failover", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="kill rounds (default 3)")
    args = parser.parse_args(argv)
    env_before = {
        k: os.environ.pop(k) for k in ("C360_POSTGRES_URL", "NATS_URL") if k in os.environ
    }
    figures: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="c360-failover-") as tmp,
        EmbeddedRuntime(Path(tmp) / "home") as runtime,
    ):
        key = auth.SigningKey.generate()
        token = key.issue("failover", auth.Role.AGENT)
        plans = [
            Deployment.plan(
                runtime.postgres_url,
                runtime.nats_url,
                base_port=free_port(count=16),
                signing_key=key,
            )
            for _ in range(2)
        ]
        sets = [Supervisor(plan, Path(tmp) / f"logs-{i}") for i, plan in enumerate(plans)]
        try:
            for i, supervisor in enumerate(sets):
                supervisor.start()
                if not supervisor.wait_ready(threading.Event(), 90.0):
                    raise RuntimeError("a set of services did not start")
                time.sleep(2.0 if i == 0 else 0)  # the first set takes the locks
            for n in range(args.rounds):
                active, survivor = (sets[0], plans[1]) if n % 2 == 0 else (sets[1], plans[0])
                seconds = asyncio.run(visible_after_kill(active, survivor, token))
                figures.append(seconds)
                print(
                    f"round {n + 1}: kill -9 of the active set -> first survivor command"
                    f" visible after {seconds:.2f} s",
                    flush=True,
                )
                active.start()  # back as the standby set
                if not active.wait_ready(threading.Event(), 90.0):
                    raise RuntimeError("the killed set did not come back")
                time.sleep(1.0)
        finally:
            for supervisor in sets:
                supervisor.stop()
    os.environ.update(env_before)
    print(
        f"failover: median {statistics.median(figures):.2f} s, max {max(figures):.2f} s"
        f" over {len(figures)} rounds (target <= 10 s)"
    )
    return 0 if max(figures) <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
