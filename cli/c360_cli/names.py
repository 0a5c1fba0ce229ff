"""Customers' names beside their ids in lists, from the timeline's profiles."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import grpc

from c360.timeline.v1 import timeline_service_pb2 as api
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli.client import Client

PARALLEL = 8


def customer_names(client: Client, ids: Iterable[str], timeout: float | None) -> dict[str, str]:
    """Each customer's display name by id; "" for one the timeline does not know. Best
    effort: a list still prints (with ids alone) when the timeline cannot be asked."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    try:
        stub = client.stub("timeline", TimelineServiceStub)
    except Exception:  # no timeline in the endpoints: ids alone
        return {}

    def name(customer_id: str) -> tuple[str, str]:
        try:
            reply = stub.GetProfile(api.GetProfileRequest(customer_id=customer_id), timeout=timeout)
        except grpc.RpcError:
            return customer_id, ""
        return customer_id, reply.profile.display_name

    with ThreadPoolExecutor(min(PARALLEL, len(wanted))) as pool:
        return dict(pool.map(name, wanted))
