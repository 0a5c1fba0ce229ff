"""The timeline query API: paging, filters, live watch, search."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from psycopg.rows import dict_row

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_timeline import query
from c360_timeline.entries import entry_message
from c360_timeline.query import ENTRY_COLUMNS
from c360_timeline.readmodel import SCHEMA

from .conftest import Stack
from .helpers import bad_fields, register

pytestmark = pytest.mark.integration


async def test_pages_are_newest_first_and_filters_apply(stack: Stack) -> None:
    reply = await register(stack.customer, "Ada Lovelace", "ada@example.com")
    cid = reply.result.aggregate_id
    token = ""
    for i in range(6):
        r = await stack.customer.AddEmail(
            capi.AddEmailRequest(customer_id=cid, email=f"a{i}@example.com")
        )
        token = r.result.consistency_token
    granted = await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=cid,
            channel=ev.CONSENT_CHANNEL_SMS,
            purpose=ev.CONSENT_PURPOSE_SERVICE,
            source="call-centre",
        )
    )
    token = granted.result.consistency_token
    seen: list[tapi.TimelineEntry] = []
    page_token = ""
    while True:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id=cid, page_size=3, page_token=page_token, wait_for=token
            ),
            timeout=10,
        )
        seen.extend(page.entries)
        page_token = page.next_page_token
        if not page_token:
            break
    assert len(seen) == 8
    assert seen[0].type == "customer.consent_granted"
    assert seen[-1].type == "customer.registered"
    keys = [(e.occurred_at.ToDatetime(), e.source, e.source_position) for e in seen]
    assert keys == sorted(keys, reverse=True)

    only = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, types=["customer.email_added"])
    )
    assert {e.type for e in only.entries} == {"customer.email_added"}
    assert len(only.entries) == 6
    future = datetime.now(UTC) + timedelta(days=1)
    later = tapi.GetTimelineRequest(customer_id=cid)
    later.since.FromDatetime(future)
    assert not (await stack.timeline.GetTimeline(later)).entries
    none = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, sources=["sales"])
    )
    assert not none.entries


async def test_page_size_and_tokens_are_validated(stack: Stack) -> None:
    cid = "00000000-0000-0000-0000-000000000001"
    for request, field in [
        (tapi.GetTimelineRequest(customer_id=cid, page_size=501), "page_size"),
        (tapi.GetTimelineRequest(customer_id=cid, page_token="garbage"), "page_token"),
        (tapi.GetTimelineRequest(customer_id=cid, wait_for="nope"), "wait_for"),
        (tapi.GetTimelineRequest(customer_id="x"), "customer_id"),
        # a filter that can match nothing: a source the timeline has not, an empty range
        (tapi.GetTimelineRequest(customer_id=cid, sources=["sales", "ticket"]), "sources[1]"),
        (
            tapi.GetTimelineRequest(
                customer_id=cid,
                since=timestamp_pb2.Timestamp(seconds=10),
                until=timestamp_pb2.Timestamp(seconds=10),
            ),
            "until",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.timeline.GetTimeline(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(caught.value) == [field]


async def test_waiting_for_a_position_never_applied_ends_within_the_deadline(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id="00000000-0000-0000-0000-000000000001", wait_for="customer:999999"
            ),
            timeout=1.0,
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_watch_streams_the_backlog_then_live_entries(stack: Stack) -> None:
    reply = await register(stack.customer, "Grace Hopper", "grace@example.com")
    cid = reply.result.aggregate_id
    call = stack.timeline.WatchTimeline(tapi.WatchTimelineRequest(customer_id=cid))
    stream = call.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert first.entry.type == "customer.registered"
    await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name="Rear Admiral Grace Hopper")
    )
    second = await asyncio.wait_for(stream.__anext__(), 10)
    assert second.entry.type == "customer.renamed"
    assert second.entry.cursor > first.entry.cursor
    call.cancel()


async def test_search_by_name_prefix_email_and_phone(stack: Stack) -> None:
    zhirnovskis = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name="Jānis Žirnovskis",
            emails=["janis@example.lv"],
            phones=["+371 2612 3456"],
        )
    )
    org = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(kind=ev.CUSTOMER_KIND_ORGANISATION, display_name="Zirkus AG")
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=org.result.aggregate_id, wait_for=org.result.consistency_token
        ),
        timeout=10,
    )
    cid = zhirnovskis.result.aggregate_id
    by_prefix = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text="zir"))
    assert [h.display_name for h in by_prefix.hits] == ["Zirkus AG", "Jānis Žirnovskis"]
    by_surname = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text="Žirn"))
    assert [h.customer_id for h in by_surname.hits] == [cid]
    by_email = await stack.timeline.SearchCustomers(
        tapi.SearchCustomersRequest(text="JANIS@example.lv")
    )
    assert [(h.customer_id, h.matched_on) for h in by_email.hits] == [(cid, "email")]
    by_phone = await stack.timeline.SearchCustomers(
        tapi.SearchCustomersRequest(text="+371 26123456")
    )
    assert [(h.customer_id, h.matched_on) for h in by_phone.hits] == [(cid, "phone")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text="  "))
    assert bad_fields(caught.value) == ["text"]


async def test_profile_of_an_unknown_customer_is_not_found(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id="00000000-0000-0000-0000-000000000001")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_search_follows_who_the_customer_is_through_other_entries(stack: Stack) -> None:
    """Entries that leave name, e-mails and phones as they were (tags here) keep the search
    columns as they were; a rename or a removed e-mail changes them."""
    reply = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name="Ottilie Quenzel",
            emails=["ottilie@quenzel.example"],
        )
    )
    cid = reply.result.aggregate_id

    async def found(text: str, after: str) -> list[str]:
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=cid, wait_for=after), timeout=10
        )
        # New profiles' search columns are filled with their entries, or just after them
        # when the keys were not there in time (reindex).
        for _ in range(100):
            hits = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text=text))
            if cid in [h.customer_id for h in hits.hits]:
                return [h.display_name for h in hits.hits if h.customer_id == cid]
            await asyncio.sleep(0.05)
        return []

    token = reply.result.consistency_token
    assert await found("ottilie@quenzel.example", token) == ["Ottilie Quenzel"]
    tagged = await stack.customer.ChangeTags(
        capi.ChangeTagsRequest(customer_id=cid, add=["vip", "newsletter"])
    )
    token = tagged.result.consistency_token
    assert await found("ottilie@quenzel.example", token) == ["Ottilie Quenzel"]
    assert await found("quenz", token) == ["Ottilie Quenzel"]
    renamed = await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name="Ottilie Brandauer")
    )
    removed = await stack.customer.RemoveEmail(
        capi.RemoveEmailRequest(customer_id=cid, email="ottilie@quenzel.example")
    )
    token = removed.result.consistency_token
    assert renamed.result.consistency_token
    assert await found("brandau", token) == ["Ottilie Brandauer"]
    for gone in ("quenz", "ottilie@quenzel.example"):
        hits = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text=gone))
        assert cid not in [h.customer_id for h in hits.hits], gone


async def test_each_entrys_kept_reply_is_the_one_its_columns_make(stack: Stack) -> None:
    """A row keeps its entry's reply as bytes (c360_timeline.entries); a reply read from
    them is the one the row's columns make, and the kept bytes hold no sealed field."""
    reply = await register(stack.customer, "Grace Hopper", "grace@example.com")
    cid = reply.result.aggregate_id
    await stack.customer.AddPhone(capi.AddPhoneRequest(customer_id=cid, phone="+44 20 7946 0018"))
    await stack.customer.AssignOwner(capi.AssignOwnerRequest(customer_id=cid, owner_id="u-7"))
    granted = await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=cid,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web-form",
        )
    )
    page = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, wait_for=granted.result.consistency_token),
        timeout=10,
    )
    assert len(page.entries) == 4
    async with await psycopg.AsyncConnection.connect(stack.postgres_url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {ENTRY_COLUMNS}, message, sealed FROM {SCHEMA}.entries")
        rows = await cur.fetchall()
    assert {r["customer_id"] for r in rows} >= {cid}
    assert all(r["message"] is not None for r in rows)
    # Registration, the phone and the consent (its source) hold sealed values; the owner not.
    sealed = {r["type"] for r in rows if r["customer_id"] == cid and r["sealed"]}
    assert sealed == {"customer.registered", "customer.phone_added", "customer.consent_granted"}
    for r in rows:
        assert entry_message(r) == entry_message({**r, "message": None, "sealed": None})
        kept = tapi.TimelineEntry.FromString(r["message"])
        assert (kept.summary, dict(kept.details)) == (
            ("", {}) if r["sealed"] else (r["summary"], r["details"])
        )
    # The reply revealed the sealed entries' fields (the columns hold them sealed).
    served = {e.type: e for e in page.entries}
    assert "Grace Hopper" in served["customer.registered"].summary
    assert served["customer.owner_assigned"].cursor > served["customer.registered"].cursor
    # Rows as written before they kept a message read as the same page and watch.
    async with await psycopg.AsyncConnection.connect(stack.postgres_url) as conn:
        await conn.execute(
            f"UPDATE {SCHEMA}.entries SET message = NULL, sealed = NULL WHERE customer_id = %s",
            (cid,),
        )
        await conn.commit()
    again = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid))
    assert list(again.entries) == list(page.entries)
    watch = stack.timeline.WatchTimeline(tapi.WatchTimelineRequest(customer_id=cid))
    stream = watch.__aiter__()
    watched = [(await asyncio.wait_for(stream.__anext__(), 10)).entry for _ in page.entries]
    watch.cancel()
    assert sorted(watched, key=lambda e: e.cursor) == sorted(page.entries, key=lambda e: e.cursor)


async def test_a_page_of_long_entries_is_cut_within_the_byte_limit_and_goes_on(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of 500 long entries was 5.1 MB, which a client with gRPC's default 4 MiB limit
    refuses (RESOURCE_EXHAUSTED): a page now ends before MAX_PAGE_BYTES (made small here), its
    token goes on from its last entry, and every entry comes once, in order."""
    monkeypatch.setattr(query, "MAX_PAGE_BYTES", 1200)
    reply = await register(stack.customer, "Ada Paged", "ada.paged@example.com")
    cid = reply.result.aggregate_id
    for n in range(9):
        last = await stack.customer.AddEmail(
            capi.AddEmailRequest(customer_id=cid, email=f"ada.paged.{n}@example.com")
        )
    token = last.result.consistency_token
    seen: list[str] = []
    pages: list[int] = []
    page_token = ""
    while True:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id=cid, page_size=50, page_token=page_token, wait_for=token
            )
        )
        assert page.ByteSize() < 1200 + 1000  # the limit, and the entry that passed it
        pages.append(len(page.entries))
        seen += [e.event_id for e in page.entries]
        page_token = page.next_page_token
        if not page_token:
            break
    assert len(pages) > 1
    assert len(seen) == len(set(seen)) == 10
    whole = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid))
    assert len(whole.entries) < 10  # the default page is cut too
    monkeypatch.setattr(query, "MAX_PAGE_BYTES", 3 << 20)
    whole = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid))
    assert [e.event_id for e in whole.entries] == seen


async def test_the_timeline_of_a_customer_it_has_no_entry_of_is_not_found(stack: Stack) -> None:
    """As GetProfile: a mistyped id was an empty page, as a customer with no history would be
    (there is none: a customer's registration is its first entry)."""
    nobody = "00000000-0000-4000-8000-0000000000ab"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=nobody))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == (
        f"the timeline has no customer {nobody} (one registered a moment ago: pass the"
        " command's consistency token as wait_for)"
    )
    # Filters that match nothing of a customer it has are an empty page, not NOT_FOUND.
    reply = await register(stack.customer, "Ada Filtered", "ada.filtered@example.com")
    cid = reply.result.aggregate_id
    page = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=cid, wait_for=reply.result.consistency_token, types=["ticket.opened"]
        )
    )
    assert list(page.entries) == []


async def test_a_page_token_continues_only_its_own_timeline(stack: Stack) -> None:
    """A token of one customer's (or one filter's) pages, sent with another request, went on
    with the other's entries from that point without an error; a first page's wait_for does
    not bind it."""
    ada = await register(stack.customer, "Ada Tokens", "ada.tokens@example.com")
    bob = await register(stack.customer, "Bob Tokens", "bob.tokens@example.com")
    a, b = ada.result.aggregate_id, bob.result.aggregate_id
    for n in range(3):
        last = await stack.customer.AddEmail(
            capi.AddEmailRequest(customer_id=a, email=f"ada.tokens.{n}@example.com")
        )
    first = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=a, page_size=2, wait_for=last.result.consistency_token)
    )
    token = first.next_page_token
    assert token
    second = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=a, page_size=2, page_token=token)
    )
    assert len(second.entries) == 2
    for other in (
        tapi.GetTimelineRequest(customer_id=b, page_token=token),
        tapi.GetTimelineRequest(customer_id=a, page_token=token, sources=["customer"]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.timeline.GetTimeline(other)
        assert bad_fields(refused.value) == ["page_token"]
