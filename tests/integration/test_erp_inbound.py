"""ERP events on erp.>: valid ones reach the timeline and profile, the rest are dead-lettered
without stopping the projection, and a dead letter replayed after a fix is applied."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import json_format
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from c360.customer.v1 import customer_service_pb2 as capi
from c360.erp.v1 import erp_events_pb2 as pb
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sales_grpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.deadletter import DeadLetter, list_dead_letters
from c360_timeline import erp_inbound

from .conftest import Stack
from .helpers import eventually, register
from .test_delivery import snapshot

pytestmark = pytest.mark.integration


def erp_event(customer_id: str, case: str, payload: Any) -> pb.ErpEvent:
    message = pb.ErpEvent(event_id=str(uuid.uuid4()), customer_id=customer_id)
    message.occurred_at.GetCurrentTime()
    getattr(message, case).CopyFrom(payload)
    return message


def invoice(customer_id: str, number: str, amount: str, currency: str = "EUR") -> pb.ErpEvent:
    return erp_event(
        customer_id,
        "invoice_issued",
        pb.InvoiceIssued(
            invoice_number=number,
            amount=pb.Money(currency=currency, amount=amount),
            issue_date="2025-03-01",
            due_date="2025-03-31",
        ),
    )


async def erp_stream(js: JetStreamContext) -> None:
    """Once the timeline created the ERP stream (its feed's first start)."""

    async def ready() -> bool:
        try:
            await js.stream_info("ERP")
        except NotFoundError:
            return False
        return True

    await eventually(ready, what="the timeline to create the ERP stream")


def cli(home: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "c360_cli.main", "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_erp_events_are_validated_applied_or_dead_lettered_and_replayed_after_a_fix(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await register(stack.customer, "Müller GmbH", "ap@mueller.example")
    customer_id = reply.result.aggregate_id
    # The profile's name comes from the customer's own feed, beside the ERP one: seen first,
    # so that the profile read below has it however far behind that feed is.
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, wait_for=reply.result.consistency_token),
        timeout=30,
    )
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    inv1 = invoice(customer_id, "INV-1", "1000.00")
    paid = erp_event(
        customer_id,
        "payment_received",
        pb.PaymentReceived(
            payment_reference="PAY-1",
            amount=pb.Money(currency="EUR", amount="400.00"),
            invoice_number="INV-1",
            received_on="2025-03-20",
        ),
    )
    lower = invoice(customer_id, "INV-2", "99.90", currency="eur")
    sent = [
        ("erp.invoice.issued", inv1.SerializeToString()),
        ("erp.invoice.issued", b"\x0a\xff garbage"),  # malformed
        ("erp.invoice.cancelled", inv1.SerializeToString()),  # unknown event type
        ("erp.payment.received", paid.SerializeToString()),  # valid after the bad ones
        ("erp.invoice.issued", lower.SerializeToString()),  # lower-case currency: refused
    ]
    for subject, data in sent:
        await js.publish(subject, data)

    async def timeline(count: int) -> list[tapi.TimelineEntry]:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=customer_id, sources=["erp"])
        )
        return list(page.entries) if len(page.entries) >= count else []

    async def applied() -> bool:
        return bool(await timeline(2))

    await eventually(applied, what="the two valid ERP events in the timeline")
    entries = await timeline(2)
    assert [e.type for e in entries] == ["payment.received", "invoice.issued"]
    assert {e.event_id for e in entries} == {inv1.event_id, paid.event_id}
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
    ).profile
    account = json_format.MessageToDict(profile.attributes)["erp"]
    assert account["outstanding"] == {"EUR": "600.00"}
    assert account["last_payment"]["payment_reference"] == "PAY-1"
    assert profile.display_name == "Müller GmbH"

    # The same ERP message sent twice (new message id, same event id) changes nothing.
    await js.publish("erp.payment.received", paid.SerializeToString())
    before = await snapshot(stack.postgres_url)
    progress = [p async for p in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
    assert progress[-1].done
    after = await snapshot(stack.postgres_url)
    # The same rows; only the arrival cursor (entry_seq) may order two feeds differently.
    assert sorted(r[1:] for r in after["entries"]) == sorted(r[1:] for r in before["entries"])
    assert after["profiles"] == before["profiles"]
    assert ("erp", 6) in [(r[0], r[1]) for r in after["timeline_tracking"]]  # seen, once
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
    ).profile
    assert json_format.MessageToDict(profile.attributes)["erp"]["outstanding"] == {"EUR": "600.00"}

    home = tmp_path / "home"
    home.mkdir()
    (home / "endpoints.json").write_text(json.dumps({"nats_url": stack.nats_url}))
    letters = (await asyncio.to_thread(cli, home, "deadletter", "list"))["dead_letters"]
    assert [(x["subject"], x["sequence"]) for x in letters] == [
        ("erp.invoice.issued", 2),
        ("erp.invoice.cancelled", 3),
        ("erp.invoice.issued", 5),
    ]
    reasons = [x["reason"] for x in letters]
    assert "does not decode" in reasons[0]
    assert "unknown event type" in reasons[1]
    assert "invoice_issued.amount.currency: must be an ISO 4217 code" in reasons[2]

    # A release of c360 that also takes lower-case currency codes; then the ERP's message is
    # replayed, unchanged, and applied.
    monkeypatch.setattr(erp_inbound, "_CURRENCY", re.compile(r"^[A-Za-z]{3}$"))
    replayed = await asyncio.to_thread(cli, home, "deadletter", "replay", str(letters[2]["id"]))
    assert replayed["replayed"]["subject"] == "erp.invoice.issued"

    async def fixed() -> bool:
        return len(await timeline(3)) == 3

    await eventually(fixed, what="the replayed invoice in the timeline")
    left = (await asyncio.to_thread(cli, home, "deadletter", "list"))["dead_letters"]
    assert [x["id"] for x in left] == [letters[0]["id"], letters[1]["id"]]
    await nc.close()


async def test_a_rebuild_does_not_dead_letter_again_what_was_refused_before_it(
    stack: Stack,
) -> None:
    """A rebuild replays the ERP stream from its start and refuses the bad messages again.
    They were dead-lettered when they came; the dead-letter stream drops a repeat only within
    its de-duplication window (10 minutes, made short here), so every later rebuild (the one
    after an upgrade) lettered each of them once more: `c360 deadletter list` showed the same
    message twice, and the ERP's `refused` too."""
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    ack = await js.publish("erp.invoice.issued", b"\x0a\xff not an ErpEvent")

    async def letters() -> list[DeadLetter]:
        return [
            x
            for x in await list_dead_letters(js)
            if x.consumer == "timeline" and x.stream == "ERP" and x.sequence == ack.seq
        ]

    async def lettered() -> bool:
        return bool(await letters())

    await eventually(lettered, what="the refused message's dead letter")
    config = (await js.stream_info("DEADLETTER")).config
    try:
        await js.update_stream(config=replace(config, duplicate_window=0.1))
        await asyncio.sleep(0.5)  # the window has passed
        progress = [
            p async for p in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())
        ]
        assert progress[-1].done
        await asyncio.sleep(1)  # a second letter would be there by now
        assert len(await letters()) == 1
    finally:
        await js.update_stream(config=config)
        await nc.close()


async def test_a_document_taken_twice_or_paid_in_another_currency_is_dead_lettered(
    stack: Stack, tmp_path: Path
) -> None:
    reply = await register(stack.customer, "Berg AG", "ap@berg.example")
    customer_id = reply.result.aggregate_id
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, wait_for=reply.result.consistency_token),
        timeout=30,
    )
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    number = f"INV-{uuid.uuid4().hex[:8]}"

    def paid(reference: str, amount: str, currency: str = "EUR") -> pb.ErpEvent:
        return erp_event(
            customer_id,
            "payment_received",
            pb.PaymentReceived(
                payment_reference=reference,
                amount=pb.Money(currency=currency, amount=amount),
                invoice_number=number,
                received_on="2025-03-20",
            ),
        )

    issued, payment = invoice(customer_id, number, "1000.00"), paid(f"P-{number}", "400.00")
    refused = [
        invoice(customer_id, number, "1000.00"),  # the ERP exported it again, with a new id
        paid(f"C-{number}", "600.00", "CHF"),  # an EUR invoice paid in francs
        paid(f"P-{number}", "400.00"),  # the payment again, with a new id
    ]
    await js.publish("erp.invoice.issued", issued.SerializeToString())
    await js.publish("erp.payment.received", payment.SerializeToString())
    for message in refused:
        subject = next(
            s for s, case in erp_inbound.SUBJECTS.items() if case == message.WhichOneof("event")
        )
        await js.publish(
            subject, message.SerializeToString(), headers={"Nats-Msg-Id": message.event_id}
        )
    # Sent after them: when it is on the timeline, they were taken or refused.
    limit = erp_event(
        customer_id,
        "credit_limit_changed",
        pb.CreditLimitChanged(credit_limit=pb.Money(currency="EUR", amount="5000")),
    )
    await js.publish("erp.credit_limit.changed", limit.SerializeToString())

    async def entries() -> list[tapi.TimelineEntry]:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=customer_id, sources=["erp"])
        )
        return list(page.entries)

    async def limit_seen() -> bool:
        return limit.event_id in {e.event_id for e in await entries()}

    await eventually(limit_seen, what="the credit limit on the timeline")
    assert {e.event_id for e in await entries()} == {
        issued.event_id,
        payment.event_id,
        limit.event_id,
    }
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
    ).profile
    account = json_format.MessageToDict(profile.attributes)["erp"]
    assert account["outstanding"] == {"EUR": "600.00"}  # not 1600 EUR and -600 CHF
    assert account["open_invoices"][number]["paid"] == "400.00"

    home = tmp_path / "home"
    home.mkdir()
    (home / "endpoints.json").write_text(json.dumps({"nats_url": stack.nats_url}))
    letters = (await asyncio.to_thread(cli, home, "deadletter", "list"))["dead_letters"]
    reasons = {x["msg_id"]: x["reason"] for x in letters}
    assert (
        f"invoice {number} was issued already (event {issued.event_id})"
        in (reasons[refused[0].event_id])
    )
    assert f"invoice {number} is in EUR, not CHF" in reasons[refused[1].event_id]
    assert f"payment P-{number} was received already" in reasons[refused[2].event_id]
    await nc.close()


async def test_an_erp_event_about_a_customer_c360_does_not_have_is_dead_lettered(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    nobody = str(uuid.uuid4())
    stray = invoice(nobody, f"INV-{uuid.uuid4().hex[:8]}", "10.00")
    await js.publish(
        "erp.invoice.issued", stray.SerializeToString(), headers={"Nats-Msg-Id": stray.event_id}
    )
    # A customer registered a moment ago, whose registration the timeline may not have
    # applied yet: the customer service knows it, so its invoice is taken.
    reply = await register(stack.customer, "Nord KG", "ap@nord.example")
    customer_id = reply.result.aggregate_id
    fresh = invoice(customer_id, f"INV-{uuid.uuid4().hex[:8]}", "20.00")
    await js.publish(
        "erp.invoice.issued", fresh.SerializeToString(), headers={"Nats-Msg-Id": fresh.event_id}
    )

    async def taken() -> bool:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=customer_id, sources=["erp"])
        )
        return [e.event_id for e in page.entries] == [fresh.event_id]

    await eventually(taken, what="the new customer's invoice on the timeline")
    home = tmp_path / "home"
    home.mkdir()
    (home / "endpoints.json").write_text(json.dumps({"nats_url": stack.nats_url}))
    letters = (await asyncio.to_thread(cli, home, "deadletter", "list"))["dead_letters"]
    reasons = {x["msg_id"]: x["reason"] for x in letters}
    assert reasons[stray.event_id].startswith(f"customer_id: c360 has no customer {nobody};")
    assert fresh.event_id not in reasons
    # No profile was made up for the id.
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=nobody))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    await nc.close()


async def deliver(js: JetStreamContext, customer_id: str, order_id: str, ref: str) -> pb.ErpEvent:
    """Publish ERP's delivery of one line of an order (as ERP does)."""
    delivery = erp_event(
        customer_id,
        "order_delivered",
        pb.OrderDelivered(
            order_id=order_id,
            order_number=f"SO-2026-{ref}",
            delivery_reference=f"DN-{ref}",
            delivered_on="2026-03-01",
            lines=[pb.DeliveredLine(line_id="l1", quantity="1")],
        ),
    )
    await js.publish(
        "erp.order.delivered",
        delivery.SerializeToString(),
        headers={"Nats-Msg-Id": delivery.event_id},
    )
    return delivery


def letters(stack: Stack, tmp_path: Path) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """What `c360 deadletter list --json` lists, read when called."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "endpoints.json").write_text(json.dumps({"nats_url": stack.nats_url}))

    async def listed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await asyncio.to_thread(cli, home, "deadletter", "list"))[
            "dead_letters"
        ]
        return found

    return listed


async def test_a_delivery_of_an_order_sales_does_not_have_is_dead_lettered_by_sales(
    stack: Stack, tmp_path: Path
) -> None:
    reply = await register(stack.customer, "Süd GmbH", "ap@sued.example")
    customer_id = reply.result.aggregate_id
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    order_id = str(uuid.uuid4())
    delivery = await deliver(js, customer_id, order_id, "00000000")
    listed = letters(stack, tmp_path)
    found: list[dict[str, Any]] = []

    async def dead_lettered() -> bool:
        found[:] = [x for x in await listed() if x["msg_id"] == delivery.event_id]
        return bool(found)

    await eventually(dead_lettered, what="the delivery among the dead letters")
    [letter] = found
    assert (letter["consumer"], letter["subject"]) == ("sales", "erp.order.delivered")
    assert letter["reason"] == f"order_delivered.order_id: sales has no order {order_id}"
    await nc.close()


async def test_a_message_two_consumers_refuse_is_kept_with_each_ones_reason(
    stack: Stack, tmp_path: Path
) -> None:
    """The timeline refuses a delivery about a customer c360 does not have, sales one of an
    order it does not have: each dead letter is kept, with its own reason (one id per
    consumer and message; a repeat by the same consumer is still kept once)."""
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)
    nobody, order_id = str(uuid.uuid4()), str(uuid.uuid4())
    delivery = await deliver(js, nobody, order_id, "00000001")
    listed = letters(stack, tmp_path)
    found: dict[str, str] = {}

    async def both() -> bool:
        found.clear()
        found.update(
            (x["consumer"], x["reason"]) for x in await listed() if x["msg_id"] == delivery.event_id
        )
        return len(found) == 2

    await eventually(both, what="the timeline's and sales' dead letters of the delivery")
    assert found["timeline"].startswith(f"customer_id: c360 has no customer {nobody};")
    assert found["sales"] == f"order_delivered.order_id: sales has no order {order_id}"
    await nc.close()


async def test_an_overdue_notice_c360_refuses_becomes_no_call_and_a_merged_customers_one_does(
    stack: Stack, tmp_path: Path
) -> None:
    """Sales follows overdue notices itself: one about a customer c360 does not have, or with
    an amount the contract refuses, is dead-lettered by sales too and schedules no call; one
    about a customer merged into another is a call about the survivor."""
    survivor = (await register(stack.customer, "Ost AG", "ap@ost.example")).result.aggregate_id
    duplicate = (await register(stack.customer, "Ost A.G.", "ar@ost.example")).result
    merged = await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(
            survivor_id=survivor, duplicate_id=duplicate.aggregate_id, reason="one company"
        )
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=duplicate.aggregate_id, wait_for=merged.result.consistency_token
        )
    )
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await erp_stream(js)

    def overdue(customer_id: str, number: str, amount: str) -> pb.ErpEvent:
        return erp_event(
            customer_id,
            "invoice_overdue",
            pb.InvoiceOverdue(
                invoice_number=number,
                amount_due=pb.Money(currency="EUR", amount=amount),
                due_date="2026-02-01",
                days_overdue=30,
            ),
        )

    nobody = str(uuid.uuid4())
    notices = {
        "stray": overdue(nobody, "INV-OV-1", "10.00"),
        "bad": overdue(survivor, "INV-OV-2", "1e3"),
        "merged": overdue(duplicate.aggregate_id, "INV-OV-3", "25.00"),
    }
    for notice in notices.values():
        await js.publish(
            "erp.invoice.overdue",
            notice.SerializeToString(),
            headers={"Nats-Msg-Id": notice.event_id},
        )
    sales = stack.stub("sales", sales_grpc.SalesServiceStub)
    calls: list[tuple[str, str]] = []

    async def called() -> bool:
        listed = await sales.ListActivities(sapi.ListActivitiesRequest())
        calls[:] = [(a.customer_id, a.subject) for a in listed.activities if "INV-OV" in a.subject]
        return bool(calls)

    await eventually(called, what="the follow-up call of the merged customer's invoice")
    listed = letters(stack, tmp_path)
    found: dict[str, str] = {}

    async def refused() -> bool:
        ids = {notices["stray"].event_id: "stray", notices["bad"].event_id: "bad"}
        found.update(
            (ids[x["msg_id"]], x["reason"])
            for x in await listed()
            if x["consumer"] == "sales" and x["msg_id"] in ids
        )
        return len(found) == 2

    await eventually(refused, what="sales' dead letters of the two notices")
    await called()  # every notice handled now: the calls they made
    assert found["stray"].startswith(f"customer_id: c360 has no customer {nobody}")
    assert found["bad"].startswith("invoice_overdue.amount_due.amount: must be a decimal number")
    [(customer_id, subject)] = calls
    assert customer_id == survivor
    assert subject.startswith("Invoice INV-OV-3 is 30 days overdue (25.00 EUR)")
    await nc.close()
