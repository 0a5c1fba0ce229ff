"""Erasure by crypto-shredding on a live stack: ForgetCustomer deletes the customer's key, so
its name, e-mail, phone and address can be read nowhere any more — not in the customer store,
the directory, the event streams, the timeline or the profile — while the history of what
happened stays and the stores' files hold none of it in clear. ForgetLead does the same for a
prospect's lead, and a lead converted from a prospect's goes with its customer."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import nats
import psycopg
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.events.v1 import contact_events_pb2
from c360.events.v1 import customer_events_pb2 as ev
from c360.events.v1 import event_log_pb2 as logapi
from c360.events.v1 import event_log_pb2_grpc as log_grpc
from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sales_grpc
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import auth
from c360_platform.channels import aio_channel
from c360_platform.pii import FORGOTTEN

from .conftest import Stack
from .helpers import eventually, status_of

pytestmark = pytest.mark.integration


def _files_holding(root: Path, needles: list[bytes]) -> dict[bytes, list[str]]:
    """Which files under `root` hold each needle, in clear."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a socket, or a file removed meanwhile
        for needle in needles:
            if needle in data:
                found[needle].append(str(path.relative_to(root)))
    return found


async def _stream_payloads(nats_url: str) -> list[bytes]:
    """Every message of the C360 stream, as stored."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("C360")
        return [
            (await js.get_msg("C360", seq)).data or b""
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await nc.close()


def _scan_for_leaks(postgres_url: str, roots: list[Path], needles: list[str], control: str) -> None:
    """Fail if a file under PostgreSQL's data directory (after a checkpoint) or `roots` holds
    one of `needles` in clear; `control`, stored in clear, must be seen (the scan works)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    for root in (Path(row[0]), *roots):
        holding = _files_holding(root, [*(n.encode() for n in needles), control.encode()])
        assert holding[control.encode()], f"the scan of {root} does not see what is in clear"
        leaks = {n.decode(): f for n, f in holding.items() if f and n != control.encode()}
        assert leaks == {}, f"personal data in clear under {root}"


async def test_a_forgotten_customer_reads_nowhere_and_is_in_no_file(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex[:8]
    name, renamed = f"Zebulon Quartermaine{tag}", f"Zebulon Q. Quartermaine{tag}"
    email, phone = f"zebulon.{tag}@example.org", "+4930901820"
    street = f"Geheimweg {tag}"
    marker = f"scanmarker{tag}"  # a tag: not personal data, stored in clear (the scan's control)
    first = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name=name,
            emails=[email],
            phones=[phone],
            addresses=[ev.PostalAddress(lines=[street], city="Berlin", country="DE")],
            tags=[marker],
        )
    )
    cid = first.result.aggregate_id
    await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name=renamed)
    )
    twin = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON, display_name=f"Zeb Quartermaine{tag}", emails=[email]
        )
    )
    twin_id = twin.result.aggregate_id
    merged = await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(
            survivor_id=cid, duplicate_id=twin_id, reason=f"same person as {name}"
        )
    )
    # The service desk's free texts about the customer are sealed with its key too.
    complaint = f"Mrs Quartermaine{tag} says the parcel for {street} never came"
    opened = dapi.OpenTicketRequest(
        request_id=f"parcel-{tag}",
        customer_id=cid,
        channel=tev.TICKET_CHANNEL_EMAIL,
        subject=f"Parcel for {name}",
        description=complaint,
        category="delivery",
    )
    ticket = await stack.service_desk.OpenTicket(opened)
    tid = ticket.result.aggregate_id
    shown = (await stack.service_desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid))).ticket
    assert (shown.subject, shown.description) == (f"Parcel for {name}", complaint)
    listed = await stack.service_desk.ListTickets(dapi.ListTicketsRequest(customer_id=cid))
    assert [t.subject for t in listed.tickets] == [f"Parcel for {name}"]
    token = merged.result.consistency_token

    # Before: every reader shows the data (revealed with the key).
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid, wait_for=token))
    ).profile
    assert (profile.display_name, list(profile.emails), list(profile.phones)) == (
        renamed,
        [email],
        [phone],
    )
    entries = (
        await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid, page_size=100))
    ).entries
    assert any(name in e.summary for e in entries)
    hits = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text="zebulon q"))
    assert [h.display_name for h in hits.hits if h.customer_id == cid] == [renamed]
    by_mail = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text=email))
    assert cid in [h.customer_id for h in by_mail.hits]
    dupes = await stack.customer.FindDuplicates(capi.FindDuplicatesRequest(customer_id=cid))
    assert dupes.candidates == []  # its only duplicate is merged

    # Agents may not forget; operators may.
    agent = aio_channel(stack.deployment.addresses["customer"], stack.token(auth.Role.AGENT))
    try:
        refused = customer_grpc.CustomerServiceStub(agent).ForgetCustomer(
            capi.ForgetCustomerRequest(customer_id=cid)
        )
        assert await status_of(refused) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await agent.close(None)
    forgot = await stack.customer.ForgetCustomer(
        capi.ForgetCustomerRequest(customer_id=cid, with_merged=True)
    )
    assert sorted(forgot.forgotten_ids) == sorted([cid, twin_id])
    again = stack.customer.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=cid))
    assert await status_of(again) == grpc.StatusCode.FAILED_PRECONDITION
    rename = stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name="Someone Else")
    )
    assert await status_of(rename) == grpc.StatusCode.FAILED_PRECONDITION

    # The customer service: the state reads as forgotten, its history too.
    got = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))).customer
    assert (got.display_name, list(got.emails), list(got.phones), list(got.addresses)) == (
        FORGOTTEN,
        [],
        [],
        [],
    )
    assert got.HasField("forgotten_at")
    assert list(got.tags) == [marker]  # what is not personal stays
    keys = await stack.customer.GetDataKeys(capi.GetDataKeysRequest(customer_ids=[cid, twin_id]))
    assert [(k.forgotten, k.key) for k in keys.keys] == [(True, b""), (True, b"")]

    # The timeline: the forget applied, the entries stay, their personal data does not.
    token = forgot.result.consistency_token
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid, wait_for=token))
    ).profile
    assert (profile.display_name, list(profile.emails), list(profile.phones)) == (FORGOTTEN, [], [])
    # Nothing new is recorded for them (it would be sealed with a key that is gone), even
    # when the caller allows an unknown customer.
    for call in (
        stack.service_desk.OpenTicket(
            dapi.OpenTicketRequest(
                customer_id=cid,
                channel=tev.TICKET_CHANNEL_PHONE,
                subject="back again",
                allow_unknown_customer=True,
            )
        ),
        stack.service_desk.RecordContact(
            dapi.RecordContactRequest(
                customer_id=cid,
                channel=tev.TICKET_CHANNEL_PHONE,
                direction=contact_events_pb2.CONTACT_DIRECTION_INBOUND,
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"customer {cid} is forgotten" in (caught.value.details() or "")
    # ...but a retry of a request answered before the forget gets its first answer.
    retried = await stack.service_desk.OpenTicket(opened)
    assert (retried.result.aggregate_id, retried.result.version) == (tid, ticket.result.version)

    async def erased() -> bool:
        # A timeline process trusts a key it read for a few seconds (CACHE_SECONDS).
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=cid, page_size=100)
        )
        text = " ".join(e.summary + str(e.details) for e in page.entries)
        return name not in text and email not in text and FORGOTTEN in text

    await eventually(erased, timeout=20, what="the timeline to read the entries as forgotten")
    page = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid, page_size=100))
    types = {e.type for e in page.entries}
    assert {"customer.registered", "customer.renamed", "customer.forgotten"} <= types
    for text in ("zebulon", email, phone):
        found = await stack.timeline.SearchCustomers(tapi.SearchCustomersRequest(text=text))
        assert cid not in [h.customer_id for h in found.hits], text

    # The service desk: the ticket stays, its texts read as forgotten (after the key caches).
    async def ticket_erased() -> bool:
        got = await stack.service_desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid))
        return (got.ticket.subject, got.ticket.description) == (FORGOTTEN, FORGOTTEN)

    await eventually(ticket_erased, timeout=20, what="the ticket's texts to read as forgotten")
    listed = await stack.service_desk.ListTickets(dapi.ListTicketsRequest(customer_id=cid))
    assert [t.subject for t in listed.tickets] == [FORGOTTEN]

    # The event streams: the catch-up read and JetStream carry the sealed values only, and
    # subscribers got CustomerForgotten.
    log = log_grpc.EventLogServiceStub(stack.channels["customer"])
    events = [
        e
        async for reply in log.ReadEvents(logapi.ReadEventsRequest(limit=1000))
        for e in reply.envelopes
    ]
    assert "c360.events.v1.CustomerForgotten" in {e.event_type for e in events}
    stored = [e.SerializeToString() for e in events] + await _stream_payloads(stack.nats_url)
    for needle in (name, renamed, email, phone, street):
        assert not any(needle.encode() in m for m in stored), needle
    assert any(b"CustomerForgotten" in m for m in stored)

    # The files: PostgreSQL's (tables and WAL, after a checkpoint), JetStream's store and the
    # logs hold none of the personal data in clear, and do hold the tag (the scan can see).
    _scan_for_leaks(
        stack.postgres_url, [tmp_path], [name, renamed, email, phone, street, complaint], marker
    )
    for needle in (name, renamed, email, phone, street):
        assert needle not in caplog.text


async def test_a_forgotten_prospects_lead_reads_nowhere_and_is_in_no_file(
    stack: Stack, tmp_path: Path
) -> None:
    sales = stack.stub("sales", sales_grpc.SalesServiceStub)
    tag = uuid.uuid4().hex[:8]
    marker = f"fairmarker{tag}"  # where the leads came from: not personal, stored in clear
    pia, pia_mail = f"Pia Prospektova{tag}", f"pia.{tag}@example.org"
    wish = f"Pia{tag} wants twelve routers for the depot"
    olaf, olaf_mail = f"Olaf Umwandler{tag}", f"olaf.{tag}@example.org"
    prospect = await sales.CaptureLead(
        sapi.CaptureLeadRequest(
            channel=lev.LEAD_CHANNEL_EVENT,
            source=marker,
            person_name=pia,
            email=pia_mail,
            phone="+4930901821",
            description=wish,
        )
    )
    pid = prospect.result.aggregate_id
    # A second prospect becomes a customer: its lead's early events keep the lead's own key.
    converting = await sales.CaptureLead(
        sapi.CaptureLeadRequest(
            channel=lev.LEAD_CHANNEL_EVENT,
            source=marker,
            person_name=olaf,
            email=olaf_mail,
            estimated_value=lev.SalesMoney(currency="EUR", amount="1200"),
        )
    )
    oid = converting.result.aggregate_id
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default",
            stages=[
                pev.PipelineStage(key="qualification", name="Qualification", probability=10),
                pev.PipelineStage(key="won", name="Won", won=True),
                pev.PipelineStage(key="lost", name="Lost", lost=True),
            ],
        )
    )
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=oid))
    converted = await sales.ConvertLead(
        sapi.ConvertLeadRequest(lead_id=oid, register_customer=True, pipeline_id="default")
    )
    cid = converted.customer_id
    shown = (await sales.GetLead(sapi.GetLeadRequest(lead_id=pid))).lead
    assert (shown.person_name, shown.email, shown.description) == (pia, pia_mail, wish)

    # Agents may not forget; a customer's lead goes with its customer.
    agent = aio_channel(stack.deployment.addresses["sales"], stack.token(auth.Role.AGENT))
    try:
        refused = sales_grpc.SalesServiceStub(agent).ForgetLead(sapi.ForgetLeadRequest(lead_id=pid))
        assert await status_of(refused) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await agent.close(None)
    refused = sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=oid))
    assert await status_of(refused) == grpc.StatusCode.FAILED_PRECONDITION

    await sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=pid))
    again = sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=pid))
    assert await status_of(again) == grpc.StatusCode.FAILED_PRECONDITION
    gone = (await sales.GetLead(sapi.GetLeadRequest(lead_id=pid))).lead
    assert gone.HasField("forgotten_at")
    assert (gone.person_name, gone.email, gone.phone, gone.description) == (FORGOTTEN,) * 4
    assert gone.source == marker

    # The customer the other prospect became is forgotten: sales forgets its lead too (it
    # follows CustomerForgotten), and with it the lead's own key.
    await stack.customer.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=cid))

    async def converted_lead_forgotten() -> bool:
        lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=oid))).lead
        return lead.HasField("forgotten_at") and lead.person_name == FORGOTTEN

    await eventually(converted_lead_forgotten, timeout=20, what="the converted lead forgotten")
    listed = await sales.ListLeads(sapi.ListLeadsRequest(page_size=200))
    names = " ".join(x.person_name + x.company_name + x.email for x in listed.leads)
    assert pia not in names
    assert olaf not in names

    # The streams carry the lead's values sealed, and LeadForgotten for both leads.
    stored = await _stream_payloads(stack.nats_url)
    for needle in (pia, pia_mail, wish, olaf, olaf_mail):
        assert not any(needle.encode() in m for m in stored), needle
    assert sum(b"LeadForgotten" in m for m in stored) == 2
    _scan_for_leaks(stack.postgres_url, [tmp_path], [pia, pia_mail, wish, olaf, olaf_mail], marker)
