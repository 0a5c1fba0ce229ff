"""Inbound ERP events: what is accepted, why the rest is refused, and the ERP account fold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from c360.erp.v1 import erp_events_pb2 as pb
from c360_timeline import erp_inbound
from c360_timeline.projection import empty_profile, entry_for, fold

CUSTOMER = "0b6e2a4c-5d1f-4c36-9c36-5f0e6d7c8b9a"


def erp_event(case: str, payload: Any, **fields: Any) -> pb.ErpEvent:
    at = Timestamp()
    at.FromDatetime(datetime(2025, 3, 1, 9, 15, tzinfo=UTC))
    message = pb.ErpEvent(
        event_id=fields.get("event_id", str(uuid.uuid4())),
        customer_id=fields.get("customer_id", CUSTOMER),
        occurred_at=at,
        erp_system="sap-test",
    )
    getattr(message, case).CopyFrom(payload)
    return message


def invoice(number: str = "INV-1", amount: str = "1000.00", **extra: Any) -> pb.ErpEvent:
    return erp_event(
        "invoice_issued",
        pb.InvoiceIssued(
            invoice_number=number,
            amount=pb.Money(currency=extra.pop("currency", "EUR"), amount=amount),
            issue_date=extra.pop("issue_date", "2025-03-01"),
            due_date=extra.pop("due_date", "2025-03-31"),
        ),
        **extra,
    )


def payment(amount: str, number: str = "INV-1", reference: str = "PAY-1") -> pb.ErpEvent:
    return erp_event(
        "payment_received",
        pb.PaymentReceived(
            payment_reference=reference,
            amount=pb.Money(currency="EUR", amount=amount),
            invoice_number=number,
            received_on="2025-03-20",
        ),
    )


def credit(
    amount: str, number: str = "INV-1", note: str = "CN-1", currency: str = "EUR"
) -> pb.ErpEvent:
    return erp_event(
        "credit_note_issued",
        pb.CreditNoteIssued(
            credit_note_number=note,
            amount=pb.Money(currency=currency, amount=amount),
            invoice_number=number,
            issue_date="2025-03-10",
        ),
    )


def overdue(number: str = "INV-1") -> pb.ErpEvent:
    return erp_event(
        "invoice_overdue",
        pb.InvoiceOverdue(
            invoice_number=number,
            amount_due=pb.Money(currency="EUR", amount="400.00"),
            due_date="2025-03-31",
            days_overdue=14,
        ),
    )


def test_a_valid_invoice_becomes_an_erp_envelope_at_its_stream_position() -> None:
    message = invoice()
    env = erp_inbound.envelope_for("erp.invoice.issued", message.SerializeToString(), 17)
    assert (env.source, env.source_position, env.event_id) == ("erp", 17, message.event_id)
    assert (env.customer_id, env.aggregate_type) == (CUSTOMER, "invoice")
    assert env.event_type == "c360.erp.v1.InvoiceIssued"
    entry = entry_for(env)
    assert entry.type == "invoice.issued"
    assert entry.summary == "Invoice INV-1 issued: 1000.00 EUR, due 2025-03-31"
    assert erp_inbound.subject_of("CreditLimitChanged") == "erp.credit_limit.changed"


@pytest.mark.parametrize(
    ("subject", "data", "reason"),
    [
        ("erp.invoice.cancelled", invoice(), "unknown event type: nothing is published on"),
        ("erp.payment.received", invoice(), "publish it on erp.invoice.issued"),
        ("erp.invoice.issued", b"\xff\xfe not protobuf", "does not decode"),
        ("erp.invoice.issued", pb.ErpEvent(event_id="x"), "ErpEvent.invoice_issued is not set"),
        ("erp.invoice.issued", invoice(customer_id=""), "customer_id: is required (a UUID)"),
        ("erp.invoice.issued", invoice(event_id="INV-1"), "event_id: must be a UUID"),
        ("erp.invoice.issued", invoice(amount="12,50"), "amount.amount: must be a decimal"),
        ("erp.invoice.issued", invoice(amount="-5"), "amount.amount: must be more than zero"),
        ("erp.invoice.issued", invoice(currency="euro"), "amount.currency: must be an ISO 4217"),
        ("erp.invoice.issued", invoice(due_date="31.03.2025"), "due_date: must be a date"),
        (
            "erp.invoice.issued",
            invoice(issue_date="2025-04-01"),
            "due_date: must not be before issue_date",
        ),
        ("erp.invoice.issued", invoice(number=""), "invoice_issued.invoice_number: is required"),
    ],
)
def test_a_message_c360_cannot_take_is_refused_saying_what_to_change(
    subject: str, data: Any, reason: str
) -> None:
    raw = data if isinstance(data, bytes) else data.SerializeToString()
    with pytest.raises(erp_inbound.Rejected) as refused:
        erp_inbound.envelope_for(subject, raw, 1)
    assert reason in str(refused.value)


def _account(*messages: pb.ErpEvent) -> dict[str, Any]:
    profile = empty_profile(CUSTOMER)
    for position, message in enumerate(messages, start=1):
        subject = next(
            s for s, c in erp_inbound.SUBJECTS.items() if c == message.WhichOneof("event")
        )
        profile = fold(
            profile,
            entry_for(erp_inbound.envelope_for(subject, message.SerializeToString(), position)),
        )
    return profile


def test_the_profile_keeps_balance_overdue_invoices_and_last_payment() -> None:
    profile = _account(
        invoice("INV-1", "1000.00"),
        invoice("INV-2", "250.50"),
        payment("600.00", "INV-1"),
        overdue("INV-1"),
        erp_event(
            "credit_limit_changed",
            pb.CreditLimitChanged(credit_limit=pb.Money(currency="EUR", amount="5000")),
        ),
    )
    account = profile["erp"]
    assert account["outstanding"] == {"EUR": "650.50"}
    assert account["overdue_invoices"] == ["INV-1"]
    assert account["last_payment"]["amount"] == "600.00"
    assert account["credit_limit"] == {"amount": "5000", "currency": "EUR"}
    assert profile["touches"]["erp"]["count"] == 5
    assert profile["last_contact_at"] == ""  # bookkeeping is not a contact

    settled = _account(invoice("INV-1", "1000.00"), overdue("INV-1"), payment("1000.00", "INV-1"))
    assert settled["erp"]["outstanding"] == {"EUR": "0.00"}
    assert settled["erp"]["overdue_invoices"] == []
    assert settled["erp"]["open_invoices"] == {}


def test_erp_provenance_names_the_invoice_and_payment_events() -> None:
    profile = _account(invoice("INV-1", "1000.00"), payment("1000.00", "INV-1"))
    prov = profile["provenance"]
    assert "erp.open_invoices[INV-1]" not in prov  # paid in full: gone from the profile
    assert prov["erp.last_payment"]["type"] == "payment.received"
    assert prov["erp.outstanding.EUR"]["type"] == "payment.received"
    assert prov["erp.outstanding.EUR"]["source"] == "erp"


def _envelopes(*messages: pb.ErpEvent) -> list[Any]:
    subjects = {c: s for s, c in erp_inbound.SUBJECTS.items()}
    return [
        erp_inbound.envelope_for(subjects[str(m.WhichOneof("event"))], m.SerializeToString(), i)
        for i, m in enumerate(messages, start=1)
    ]


def test_an_invoice_number_or_payment_reference_is_taken_once() -> None:
    first, again = invoice("INV-1", "1000.00"), invoice("INV-1", "1000.00")
    paid, paid_again = payment("400.00"), payment("400.00")
    envelopes = _envelopes(first, again, first, paid, paid_again)
    reasons = erp_inbound.conflicts(envelopes, {})
    # The first of each, and a resend of the first invoice (a repeat, dropped later): taken.
    assert [reasons[0], reasons[2], reasons[3]] == [None, None, None]
    assert f"invoice INV-1 was issued already (event {first.event_id})" in str(reasons[1])
    assert f"payment PAY-1 was received already (event {paid.event_id})" in str(reasons[4])
    # Taken in an earlier batch: the same.
    taken = {
        envelopes[0].aggregate_id: erp_inbound.Document(first.event_id, "invoice.issued", "EUR")
    }
    assert erp_inbound.documents_read(envelopes[1:2]) == {envelopes[0].aggregate_id}
    assert "was issued already" in str(erp_inbound.conflicts(envelopes[1:2], taken)[0])


def test_a_payment_in_another_currency_than_its_invoice_is_refused() -> None:
    chf = payment("600.00")
    chf.payment_received.amount.currency = "CHF"
    on_account = payment("600.00", number="", reference="PAY-2")
    on_account.payment_received.amount.currency = "CHF"
    reasons = erp_inbound.conflicts(_envelopes(invoice("INV-1"), chf, on_account), {})
    assert reasons[1] == (
        "payment_received.amount.currency: invoice INV-1 is in EUR, not CHF; a payment of it"
        " is in EUR (convert it in the ERP), or on account without an invoice_number"
    )
    assert [reasons[0], reasons[2]] == [None, None]
    # Before its invoice (in another batch, or never issued): nothing to compare with yet.
    assert erp_inbound.conflicts(_envelopes(chf), {}) == [None]


def test_a_credit_note_lowers_what_is_owed_and_settles_its_invoice_with_the_payments() -> None:
    """Goods returned: 300 of INV-1's 1000 credited, 700 paid, and INV-1 is settled (not
    paid: paid_total counts money received); a credit on account lowers the balance alone."""
    profile = _account(
        invoice("INV-1", "1000.00"),
        overdue("INV-1"),
        credit("300.00", "INV-1"),
        payment("700.00", "INV-1"),
        credit("50.00", number="", note="CN-2"),
    )
    account = profile["erp"]
    assert account["outstanding"] == {"EUR": "-50.00"}  # the customer's credit
    assert (account["open_invoices"], account["overdue_invoices"]) == ({}, [])
    assert account["paid_total"] == {"EUR": "700.00"}
    half = _account(invoice("INV-1", "1000.00"), credit("300.00", "INV-1"))["erp"]
    assert half["open_invoices"]["INV-1"]["credited"] == "300.00"
    assert half["outstanding"] == {"EUR": "700.00"}
    [summary] = [entry_for(env).summary for env in _envelopes(credit("300.00", "INV-1"))]
    assert summary == "Credit note CN-1 issued: 300.00 EUR for invoice INV-1"


def test_a_credit_note_is_taken_once_and_in_its_invoices_currency() -> None:
    first, again = credit("300.00"), credit("300.00")
    chf = credit("100.00", note="CN-2", currency="CHF")
    reasons = erp_inbound.conflicts(_envelopes(invoice("INV-1"), first, again, chf), {})
    assert reasons[:2] == [None, None]
    assert f"credit note CN-1 was issued already (event {first.event_id})" in str(reasons[2])
    assert reasons[3] == (
        "credit_note_issued.amount.currency: invoice INV-1 is in EUR, not CHF; a credit note"
        " of it is in EUR (convert it in the ERP), or on account without an invoice_number"
    )
    refused = erp_inbound.envelope_for
    with pytest.raises(erp_inbound.Rejected, match="credit_note_number: is required"):
        refused("erp.credit_note.issued", credit("1", note="").SerializeToString(), 1)
    with pytest.raises(erp_inbound.Rejected, match=r"amount\.amount: must be more than zero"):
        refused("erp.credit_note.issued", credit("0").SerializeToString(), 1)
