"""Merge and unmerge on a live stack: both histories on the survivor, pointers, refusals,
chains, as-of, and unmerge as an exact inverse."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import json_format, timestamp_pb2
from psycopg import sql

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from c360_platform.embedded import EmbeddedNats
from tests.conftest import with_database

from .conftest import Stack, open_stack
from .helpers import register

pytestmark = pytest.mark.integration

MERGE_TYPES = {
    "customer.merged_into",
    "customer.duplicate_absorbed",
    "customer.unmerged",
    "customer.duplicate_released",
}


def _ts(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


async def _timeline(
    timeline: timeline_grpc.TimelineServiceAsyncStub,
    cid: str,
    token: str = "",
    as_of: datetime | None = None,
) -> list[tapi.TimelineEntry]:
    request = tapi.GetTimelineRequest(customer_id=cid, page_size=500, wait_for=token)
    if as_of is not None:
        request.as_of.CopyFrom(_ts(as_of))
    return list((await timeline.GetTimeline(request, timeout=10)).entries)


async def _profile(
    timeline: timeline_grpc.TimelineServiceAsyncStub, cid: str, token: str = ""
) -> tapi.Profile:
    reply = await timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=cid, wait_for=token), timeout=10
    )
    return reply.profile


def _without_merges(entries: list[tapi.TimelineEntry]) -> list[tapi.TimelineEntry]:
    return [e for e in entries if e.type not in MERGE_TYPES]


def _refused(error: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    return error.value.code(), error.value.details() or ""


async def _merge(stack: Stack, survivor: str, duplicate: str) -> capi.MergeCustomersResponse:
    return await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(
            survivor_id=survivor, duplicate_id=duplicate, reason="same person"
        )
    )


async def test_merge_shows_both_histories_and_unmerge_restores_both_exactly(
    stack: Stack,
) -> None:
    s = (await register(stack.customer, "Jānis Žirnovskis", "janis@example.lv")).result
    d = (await register(stack.customer, "Janis Zhirnovskis", "j.z@example.lv")).result
    sid, did = s.aggregate_id, d.aggregate_id
    await stack.customer.AddPhone(capi.AddPhoneRequest(customer_id=did, phone="+4930123"))
    await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=sid,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web",
        )
    )
    last = await stack.customer.RevokeConsent(
        capi.RevokeConsentRequest(
            customer_id=did,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="call-centre",
        )
    )
    token = last.result.consistency_token
    before = {c: await _timeline(stack.timeline, c, token) for c in (sid, did)}
    profiles = {c: await _profile(stack.timeline, c, token) for c in (sid, did)}
    customers = {
        c: (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=c))).customer
        for c in (sid, did)
    }
    await asyncio.sleep(0.01)
    merge_time = datetime.now(UTC)
    await asyncio.sleep(0.01)

    merged = await _merge(stack, sid, did)
    assert merged.merge_id
    assert merged.result.aggregate_id == sid
    token = merged.result.consistency_token

    # the survivor's timeline holds both histories, each entry under its own id
    group = await _timeline(stack.timeline, sid, token)
    recorded = {(e.customer_id, e.event_id) for e in group}
    for c in (sid, did):
        assert {(c, e.event_id) for e in before[c]} <= recorded
    types = {(e.customer_id, e.type) for e in group}
    assert (sid, "customer.duplicate_absorbed") in types
    assert (did, "customer.merged_into") in types
    assert [e.occurred_at.ToDatetime() for e in group] == sorted(
        (e.occurred_at.ToDatetime() for e in group), reverse=True
    )
    absorbed = next(e for e in group if e.type == "customer.duplicate_absorbed")
    conflicts = json_format.MessageToDict(absorbed.details)["conflicts"]
    assert [(c["channel"], c["kept"]) for c in conflicts] == [
        ("CONSENT_CHANNEL_EMAIL", "duplicate")
    ]

    # GetCustomer: the survivor's combined view; the duplicate points at the survivor
    survivor = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=sid))).customer
    assert list(survivor.absorbed) == [did]
    assert survivor.display_name == "Jānis Žirnovskis"
    assert list(survivor.emails) == ["janis@example.lv", "j.z@example.lv"]
    assert list(survivor.phones) == ["+4930123"]
    assert [(c.granted, c.source) for c in survivor.consents] == [(False, "call-centre")]
    duplicate = (
        await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=did))
    ).customer
    assert duplicate.merged_into == sid
    assert list(duplicate.emails) == ["j.z@example.lv"]

    # the profile of the survivor joins both; the duplicate's stays its own with a pointer
    joined = await _profile(stack.timeline, sid)
    assert list(joined.absorbed) == [did]
    assert list(joined.emails) == ["janis@example.lv", "j.z@example.lv"]
    assert list(joined.phones) == ["+4930123"]
    consent = json_format.MessageToDict(joined.attributes)["consent"]["email/marketing"]
    assert consent["granted"] is False
    prov = {f.field: f for f in joined.provenance}
    assert prov["phones[+4930123]"].event_id in {e.event_id for e in before[did]}
    own = await _profile(stack.timeline, did)
    assert own.merged_into == sid
    assert list(own.emails) == ["j.z@example.lv"]

    # commands on the merged customer are refused, naming the survivor
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=did, display_name="X")
        )
    code, details = _refused(refused)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert sid in details
    # ...and so is new work for them in another service, also for a caller that allows an
    # unknown customer: it is recorded for the survivor, the person's record now.
    ticket = dapi.OpenTicketRequest(
        customer_id=did,
        channel=tev.TICKET_CHANNEL_PHONE,
        subject="Where is my parcel?",
        allow_unknown_customer=True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.service_desk.OpenTicket(ticket)
    code, details = _refused(refused)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"customer {did} was merged into customer {sid}: record a ticket for {sid}" in details

    # as of before the merge: the unmerged state
    then = await _timeline(stack.timeline, sid, as_of=merge_time)
    assert {e.customer_id for e in then} == {sid}
    old = (
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id=sid, as_of=_ts(merge_time))
        )
    ).customer
    assert list(old.absorbed) == []
    assert list(old.emails) == ["janis@example.lv"]
    old_dup = (
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id=did, as_of=_ts(merge_time))
        )
    ).customer
    assert old_dup.merged_into == ""
    old_profile = (
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=sid, as_of=_ts(merge_time))
        )
    ).profile
    assert list(old_profile.emails) == ["janis@example.lv"]
    assert not old_profile.absorbed

    # unmerge: both as if the merge never happened, plus the merge and unmerge entries
    unmerged = await stack.customer.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=did))
    assert unmerged.merge_id == merged.merge_id
    token = unmerged.result.consistency_token
    for c in (sid, did):
        after = await _timeline(stack.timeline, c, token)
        assert _without_merges(after) == before[c]
        assert {e.type for e in after if e.type in MERGE_TYPES} == (
            {"customer.duplicate_absorbed", "customer.duplicate_released"}
            if c == sid
            else {"customer.merged_into", "customer.unmerged"}
        )
        assert await _profile(stack.timeline, c) == profiles[c]
        now = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=c))).customer
        expected = capi.Customer()
        expected.CopyFrom(customers[c])
        expected.version = now.version
        expected.updated_at.CopyFrom(now.updated_at)
        assert now == expected
    # and the duplicate takes commands again, its own and other services'
    await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=did, display_name="Janis Z.")
    )
    opened = await stack.service_desk.OpenTicket(ticket)
    assert opened.result.aggregate_id
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stack.customer.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=did))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_merge_chain_is_one_timeline_and_profile_until_its_middle_is_unmerged(
    stack: Stack,
) -> None:
    """The timeline's groups (the customer service's chain rules are unit-tested in memory)."""
    a = (await register(stack.customer, "Ada A", "a@example.com")).result.aggregate_id
    b = (await register(stack.customer, "Ada B", "b@example.com")).result.aggregate_id
    c = (await register(stack.customer, "Ada C", "c@example.com")).result.aggregate_id
    await _merge(stack, b, a)
    last = await _merge(stack, c, b)
    entries = await _timeline(stack.timeline, c, last.result.consistency_token)
    assert {e.customer_id for e in entries} == {a, b, c}
    profile = await _profile(stack.timeline, c)
    assert list(profile.absorbed) == [b, a]
    assert sorted(profile.emails) == ["a@example.com", "b@example.com", "c@example.com"]
    assert (await _profile(stack.timeline, a)).merged_into == c
    # a duplicate's e-mail finds the end of its chain, saying whose e-mail it was
    assert await _found(stack, "a@example.com") == [(c, "Ada C", a)]
    assert await _found(stack, "c@example.com") == [(c, "Ada C", "")]

    # unmerging the middle of the chain takes its own duplicate with it
    released = await stack.customer.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=b))
    entries = await _timeline(stack.timeline, c, released.result.consistency_token)
    assert {e.customer_id for e in entries} == {c}
    assert {e.customer_id for e in await _timeline(stack.timeline, b)} == {a, b}
    assert await _found(stack, "a@example.com") == [(b, "Ada B", a)]
    assert await _found(stack, "b@example.com") == [(b, "Ada B", "")]


async def _found(stack: Stack, text: str) -> list[tuple[str, str, str]]:
    reply = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text=text))
    return [(h.customer_id, h.display_name, h.merged_customer_id) for h in reply.hits]


def _entry_view(entries: list[tapi.TimelineEntry]) -> list[tuple[str, str, str]]:
    """What a reader sees of a timeline, without ids and times (which differ between stores)."""
    return [(e.source, e.type, e.summary) for e in _without_merges(entries)]


def _profile_view(profile: tapi.Profile) -> dict[str, object]:
    attributes = json_format.MessageToDict(profile.attributes)
    consent = {k: (v["granted"], v["source"]) for k, v in attributes.get("consent", {}).items()}
    return {
        "kind": profile.kind,
        "display_name": profile.display_name,
        "emails": list(profile.emails),
        "phones": list(profile.phones),
        "owner_id": profile.owner_id,
        "tags": list(profile.tags),
        "consent": consent,
        "touches": {t.source: t.count for t in profile.touches},
        "merged_into": profile.merged_into,
        "absorbed": list(profile.absorbed),
    }


async def _run_story(stack: Stack, *, merge: bool) -> dict[str, object]:
    """The same commands in every store; with `merge`, a merge and an unmerge in the middle."""
    ada = (await register(stack.customer, "Ada Lovelace", "ada@example.com")).result.aggregate_id
    dup = (await register(stack.customer, "Ada King", "countess@example.org")).result.aggregate_id
    c = stack.customer
    await c.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=dup,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web-form",
        )
    )
    if merge:
        await _merge(stack, ada, dup)
    # Commands that go on while the two are merged: the survivor's own.
    await c.AddPhone(capi.AddPhoneRequest(customer_id=ada, phone="+44 20 7946 0958"))
    await c.ChangeTags(capi.ChangeTagsRequest(customer_id=ada, add=["vip"]))
    if merge:
        await c.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=dup))
    last = await c.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=dup, display_name="Augusta Ada King")
    )
    token = last.result.consistency_token
    return {
        name: (
            _entry_view(await _timeline(stack.timeline, cid, token)),
            _profile_view(await _profile(stack.timeline, cid, token)),
        )
        for name, cid in (("survivor", ada), ("duplicate", dup))
    }


async def test_unmerge_leaves_both_customers_as_in_a_store_where_no_merge_happened(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    merged = await _run_story(stack, merge=True)
    other_db = f"t_nomerge_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other_db)))
    nats_server = EmbeddedNats(tmp_path / "other-nats")
    try:
        async with open_stack(with_database(postgres_url, other_db), nats_server.start()) as other:
            never_merged = await _run_story(other, merge=False)
    finally:
        nats_server.stop()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other_db))
            )
    assert merged == never_merged


async def test_watching_a_survivor_follows_what_is_recorded_under_its_duplicates(
    stack: Stack,
) -> None:
    ada = (await register(stack.customer, "Ada Lovelace", "ada@example.com")).result.aggregate_id
    dup = (await register(stack.customer, "Ada King", "ada@example.com")).result.aggregate_id
    # A ticket of the duplicate's, opened before the merge.
    opened = await stack.service_desk.OpenTicket(
        dapi.OpenTicketRequest(
            customer_id=dup, channel=tev.TICKET_CHANNEL_PHONE, subject="Invoice question"
        )
    )
    call = stack.timeline.WatchTimeline(tapi.WatchTimelineRequest(customer_id=ada))
    stream = call.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert (first.entry.type, first.entry.customer_id) == ("customer.registered", ada)

    await _merge(stack, ada, dup)
    # The service desk goes on with that ticket under the old id (new tickets for the
    # duplicate are refused, naming the survivor; its open ones carry on).
    await stack.service_desk.ResolveTicket(
        dapi.ResolveTicketRequest(
            ticket_id=opened.result.aggregate_id, resolution="Explained", agent_id="agent-7"
        )
    )
    # The sources' relays publish independently, so the ticket may arrive before the merge's
    # second entry: wait for all three, in whatever order.
    expected = {
        ("ticket.resolved", dup),
        ("customer.duplicate_absorbed", ada),
        ("customer.merged_into", dup),
    }
    seen: list[tuple[str, str]] = []
    while not expected <= set(seen):
        reply = await asyncio.wait_for(stream.__anext__(), 10)
        seen.append((reply.entry.type, reply.entry.customer_id))
    call.cancel()
