"""Group commit over gRPC: 1,000 concurrent commands, a few of them conflicting, give exactly
the right answers and effects (no loss, no doubles, the order per aggregate kept)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any
from uuid import UUID

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360_platform.pii import reveal
from c360_platform.store import RowQuery

from .conftest import Stack
from .helpers import registration

NEW = 700
RENAMED = 260
CONFLICTING = 10
REPEATED = 5
REUSED = 5
# 700 + 260 + 2x10 + 2x5 + 2x5 = 1,000 commands at once.


async def answer(call: Any) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        return error.code()


def rename(cid: str, name: str) -> capi.RenameCustomerRequest:
    return capi.RenameCustomerRequest(customer_id=cid, expected_version=1, display_name=name)


async def test_a_thousand_concurrent_commands_with_a_few_conflicts(stack: Stack) -> None:
    app = stack.customer_app
    if app.writer is None:
        pytest.skip("group commit is off (C360_GROUP_COMMIT=0)")
    stub = stack.customer
    existing = await asyncio.gather(
        *(
            stub.RegisterCustomer(registration(f"Existing {i}", f"existing{i}@example.com"))
            for i in range(RENAMED + CONFLICTING)
        )
    )
    ids = [r.result.aggregate_id for r in existing]
    before = app.event_recorder.count_events()

    calls: dict[str, Any] = {}
    for i in range(NEW):
        calls[f"new{i}"] = stub.RegisterCustomer(
            registration(f"New {i}", f"new{i}@example.com", f"new-{i}")
        )
    for i in range(RENAMED):
        calls[f"rename{i}"] = stub.RenameCustomer(rename(ids[i], f"Renamed {i}"))
    for i in range(CONFLICTING):
        cid = ids[RENAMED + i]
        calls[f"conflict{i}a"] = stub.RenameCustomer(rename(cid, f"Winner {i}a"))
        calls[f"conflict{i}b"] = stub.RenameCustomer(rename(cid, f"Winner {i}b"))
    for i in range(REPEATED):  # a retry sent while the first attempt is in flight
        request = registration(f"Repeated {i}", f"repeated{i}@example.com", f"repeat-{i}")
        calls[f"repeat{i}a"] = stub.RegisterCustomer(request)
        calls[f"repeat{i}b"] = stub.RegisterCustomer(request)
    for i in range(REUSED):  # one request id for two different requests
        calls[f"reuse{i}a"] = stub.RegisterCustomer(
            registration(f"Reused {i}", f"reused{i}a@example.com", f"reuse-{i}")
        )
        calls[f"reuse{i}b"] = stub.RegisterCustomer(
            registration(f"Reused {i}", f"reused{i}b@example.com", f"reuse-{i}")
        )
    assert len(calls) == 1000
    names = list(calls)
    replies = dict(
        zip(names, await asyncio.gather(*(answer(c) for c in calls.values())), strict=True)
    )

    # The answers: every command that does not conflict is OK, once.
    for i in range(NEW):
        reply = replies[f"new{i}"]
        assert not isinstance(reply, grpc.StatusCode), (f"new{i}", reply)
        assert reply.result.version == 1
        assert not reply.result.replayed
    for i in range(RENAMED):
        reply = replies[f"rename{i}"]
        assert not isinstance(reply, grpc.StatusCode), (f"rename{i}", reply)
        assert reply.result.version == 2
    winners: dict[str, str] = {}
    for i in range(CONFLICTING):
        pair = [replies[f"conflict{i}a"], replies[f"conflict{i}b"]]
        codes = sorted(str(r) for r in pair if isinstance(r, grpc.StatusCode))
        assert codes == [str(grpc.StatusCode.ABORTED)], (i, pair)
        winners[ids[RENAMED + i]] = (
            f"Winner {i}a" if pair[1] == grpc.StatusCode.ABORTED else (f"Winner {i}b")
        )
    for i in range(REPEATED):
        a, b = replies[f"repeat{i}a"], replies[f"repeat{i}b"]
        assert not isinstance(a, grpc.StatusCode)
        assert not isinstance(b, grpc.StatusCode)
        assert a.result.aggregate_id == b.result.aggregate_id
        assert sorted([a.result.replayed, b.result.replayed]) == [False, True]
    for i in range(REUSED):
        pair = [replies[f"reuse{i}a"], replies[f"reuse{i}b"]]
        refused = [r for r in pair if isinstance(r, grpc.StatusCode)]
        assert refused == [grpc.StatusCode.INVALID_ARGUMENT], (i, pair)

    # The effects: exactly one event per successful command, nothing lost, nothing doubled.
    expected = NEW + RENAMED + CONFLICTING + REPEATED + REUSED
    assert app.event_recorder.count_events() - before == expected
    log = app.event_recorder.select_with_metadata(0, 100_000)
    versions: dict[str, list[int]] = defaultdict(list)
    for notification, _ in log:
        versions[str(notification.originator_id)].append(notification.originator_version)
    # In log order, each aggregate's versions are 1, 2, … with no gap and no repeat.
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert len(versions) == NEW + RENAMED + CONFLICTING + REPEATED + REUSED
    for i in range(RENAMED):
        assert app.get_customer(UUID(ids[i])).display_name == f"Renamed {i}"
    for cid, name in winners.items():
        assert app.get_customer(UUID(cid)).display_name == name
    # The query table agrees with the events (written in the same transactions).
    rows = app.rows(RowQuery())
    keys = app.keyring.keys(r["customer_id"] for r in rows)
    directory = {str(r["customer_id"]): reveal(r["display_name"], keys) for r in rows}
    assert len(directory) == len(versions)
    assert all(directory[cid] == name for cid, name in winners.items())
    # And the commands were in fact batched.
    assert app.writer.stats.largest_batch > 1
    assert app.writer.stats.transactions < app.writer.stats.commands
