"""Inbound ERP events (c360.erp.v1), pure: validation and the envelope.

An ERP publishes an `ErpEvent` on erp.<aggregate>.<event>. A valid one becomes an envelope of
source `erp` (position: its sequence in the ERP stream) that the timeline treats like any
other event (its plug-in is `sources/erp.py`); an invalid one is `Rejected` with a reason that
tells the ERP what to change. A valid one may still conflict with the documents taken before
(`conflicts`): an invoice number or payment reference taken already under another event id,
a payment in another currency than its invoice's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from c360.erp.v1 import erp_events_pb2 as pb
from c360.events.v1 import envelope_pb2
from c360_platform.envelope import ENVELOPE_VERSION, short_type
from c360_platform.validation import Violations

SOURCE = "erp"
SUBJECT_ROOT = "erp"
T = TypeVar("T")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_NAMESPACE = uuid.UUID("e7b1d2c3-4a5b-4c6d-8e9f-c360c360e7b1")

AGGREGATES: dict[str, str] = {
    "InvoiceIssued": "invoice",
    "PaymentReceived": "payment",
    "InvoiceOverdue": "invoice",
    "CreditLimitChanged": "credit_limit",
    "OrderDelivered": "order",
    "CreditNoteIssued": "credit_note",
}
"""The ERP aggregate each payload is about; its subject is erp.<aggregate>.<event>."""


def subject_of(payload_name: str) -> str:
    """erp.invoice.issued for InvoiceIssued."""
    return f"{SUBJECT_ROOT}.{short_type(AGGREGATES[payload_name], payload_name)}"


_CASES = {
    f.message_type.name: f.name
    for f in pb.ErpEvent.DESCRIPTOR.oneofs_by_name["event"].fields
    if f.message_type is not None
}
SUBJECTS: dict[str, str] = {subject_of(name): case for name, case in _CASES.items()}
"""Every subject an ERP may publish on -> the ErpEvent field that carries its payload."""


DOCUMENT_TYPES = ("invoice.issued", "payment.received", "credit_note.issued")
"""The entry types of the ERP's documents, each taken once by its number."""


@dataclass(frozen=True)
class Document:
    """An ERP document the timeline took: the event that brought it, its entry type
    (DOCUMENT_TYPES) and its currency."""

    event_id: str
    type: str
    currency: str


class Rejected(ValueError):
    """An inbound message c360 cannot take; str() is the reason, for the dead-letter headers."""


class _Violations:
    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, field: str, description: str) -> None:
        self.found.append(f"{field}: {description}")

    def uuid(self, field: str, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.add(field, "must be a UUID" if value else "is required (a UUID)")
            return ""

    def text(self, field: str, value: str, limit: int = 64) -> None:
        if not value.strip():
            self.add(field, "is required")
        elif len(value) > limit:
            self.add(field, f"must be at most {limit} characters")

    def _platform(self, check: Callable[[Violations], T]) -> T:
        """A check of the platform's (the rules every service reads values by), its
        violations added here."""
        checks = Violations()
        result = check(checks)
        for violation in checks.items:
            self.add(violation.field, violation.description)
        return result

    def day(self, field: str, value: str, *, required: bool = True) -> date | None:
        return self._platform(lambda c: c.day(field, value, required=required))

    def decimal(self, field: str, value: str) -> Decimal | None:
        return self._platform(lambda c: c.decimal(field, value, negative=True))

    def money(self, field: str, value: pb.Money, present: bool, *, positive: bool = True) -> None:
        if not present:
            self.add(field, "is required")
            return
        if not _CURRENCY.match(value.currency):  # the contract takes it only as written
            self.add(f"{field}.currency", "must be an ISO 4217 code such as EUR")
        else:
            self._platform(lambda c: c.currency(f"{field}.currency", value.currency))
        amount = self.decimal(f"{field}.amount", value.amount)
        if amount is None:
            return
        if positive and amount <= 0:
            self.add(f"{field}.amount", "must be more than zero")
        elif amount < 0:
            self.add(f"{field}.amount", "must not be negative")


def _validate(case: str, event: Any, v: _Violations) -> str:
    """Check one payload; returns the document number its aggregate id derives from."""
    p = f"{case}."
    if case == "invoice_issued":
        v.text(p + "invoice_number", event.invoice_number)
        v.money(p + "amount", event.amount, event.HasField("amount"))
        issued = v.day(p + "issue_date", event.issue_date)
        due = v.day(p + "due_date", event.due_date)
        if issued and due and due < issued:
            v.add(p + "due_date", "must not be before issue_date")
        return str(event.invoice_number)
    if case == "payment_received":
        v.text(p + "payment_reference", event.payment_reference)
        v.money(p + "amount", event.amount, event.HasField("amount"))
        if event.invoice_number:
            v.text(p + "invoice_number", event.invoice_number)
        v.day(p + "received_on", event.received_on)
        return str(event.payment_reference)
    if case == "credit_note_issued":
        v.text(p + "credit_note_number", event.credit_note_number)
        v.money(p + "amount", event.amount, event.HasField("amount"))
        if event.invoice_number:
            v.text(p + "invoice_number", event.invoice_number)
        v.day(p + "issue_date", event.issue_date)
        return str(event.credit_note_number)
    if case == "invoice_overdue":
        v.text(p + "invoice_number", event.invoice_number)
        v.money(p + "amount_due", event.amount_due, event.HasField("amount_due"))
        v.day(p + "due_date", event.due_date)
        return str(event.invoice_number)
    if case == "order_delivered":
        order = v.uuid(p + "order_id", event.order_id)
        v.text(p + "delivery_reference", event.delivery_reference)
        v.day(p + "delivered_on", event.delivered_on)
        if not event.lines:
            v.add(p + "lines", "at least one delivered line is required")
        for i, line in enumerate(event.lines):
            v.text(f"{p}lines[{i}].line_id", line.line_id)
            quantity = v.decimal(f"{p}lines[{i}].quantity", line.quantity)
            if quantity is not None and quantity <= 0:
                v.add(f"{p}lines[{i}].quantity", "must be more than zero")
        return f"{order}:{event.delivery_reference}"
    v.money(p + "credit_limit", event.credit_limit, event.HasField("credit_limit"), positive=False)
    if event.HasField("previous_credit_limit"):
        v.money(p + "previous_credit_limit", event.previous_credit_limit, True, positive=False)
    return ""


def envelope_for(subject: str, data: bytes, position: int) -> envelope_pb2.Envelope:
    """The envelope of a valid inbound message, at `position` (its ERP stream sequence)."""
    if subject not in SUBJECTS:
        known = ", ".join(sorted(SUBJECTS))
        raise Rejected(f"unknown event type: nothing is published on {subject}; use one of {known}")
    message = pb.ErpEvent()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise Rejected("not a c360.erp.v1.ErpEvent: the message does not decode") from None
    case = message.WhichOneof("event")
    expected = SUBJECTS[subject]
    if case is None:
        raise Rejected(
            f"ErpEvent.{expected} is not set (a payload this c360 does not know, or none);"
            f" {subject} carries ErpEvent.{expected}"
        )
    if case != expected:
        right = next(s for s, c in SUBJECTS.items() if c == case)
        raise Rejected(f"ErpEvent.{case} was published on {subject}; publish it on {right}")
    v = _Violations()
    event_id = v.uuid("event_id", message.event_id)
    customer_id = v.uuid("customer_id", message.customer_id)
    if not message.HasField("occurred_at"):
        v.add("occurred_at", "is required")
    payload = getattr(message, case)
    document = _validate(case, payload, v)
    if v.found:
        raise Rejected("; ".join(v.found))
    name = payload.DESCRIPTOR.name
    aggregate = AGGREGATES[name]
    packed = any_pb2.Any()
    packed.Pack(payload, type_url_prefix="type.c360.dev/")
    return envelope_pb2.Envelope(
        event_id=event_id,
        source=SOURCE,
        event_type=payload.DESCRIPTOR.full_name,
        customer_id=customer_id,
        aggregate_id=aggregate_of(aggregate, document or customer_id),
        aggregate_type=aggregate,
        aggregate_version=0,
        source_position=position,
        occurred_at=message.occurred_at,
        correlation_id=event_id,
        payload=packed,
        envelope_version=ENVELOPE_VERSION,
    )


def unknown_customer(customer_id: str) -> str:
    """The reason for a message about a customer c360 does not have."""
    return (
        f"customer_id: c360 has no customer {customer_id}; send the id of a customer c360"
        " registered (the aggregate_id of c360.customer.customer.registered)"
    )


def aggregate_of(aggregate: str, document: str) -> str:
    """The aggregate id of an ERP document: invoice INV-1 is always the same aggregate."""
    return str(uuid.uuid5(_NAMESPACE, f"{aggregate}:{document}"))


def _document(env: envelope_pb2.Envelope) -> tuple[str, Any] | None:
    """(entry type, payload) of an envelope that brings a document; None for the others."""
    if env.event_type == pb.InvoiceIssued.DESCRIPTOR.full_name:
        invoice = pb.InvoiceIssued()
        env.payload.Unpack(invoice)
        return "invoice.issued", invoice
    if env.event_type == pb.PaymentReceived.DESCRIPTOR.full_name:
        payment = pb.PaymentReceived()
        env.payload.Unpack(payment)
        return "payment.received", payment
    if env.event_type == pb.CreditNoteIssued.DESCRIPTOR.full_name:
        credit = pb.CreditNoteIssued()
        env.payload.Unpack(credit)
        return "credit_note.issued", credit
    return None


def documents_read(envelopes: Iterable[envelope_pb2.Envelope]) -> set[str]:
    """The aggregate ids `conflicts` needs to know about: each document's own, and the
    invoice each payment or credit note names."""
    wanted: set[str] = set()
    for env in envelopes:
        found = _document(env)
        if found is None:
            continue
        wanted.add(env.aggregate_id)
        if found[0] != "invoice.issued" and found[1].invoice_number:
            wanted.add(aggregate_of("invoice", found[1].invoice_number))
    return wanted


def conflicts(
    envelopes: Sequence[envelope_pb2.Envelope], taken: Mapping[str, Document]
) -> list[str | None]:
    """For each valid envelope, in order, why it cannot be taken given the documents taken
    before it (`taken`, by aggregate id, and the envelopes before it): None when it can.

    An invoice number, a payment reference or a credit note number is one document: a
    second event bringing it (another event id; a resend of the same id is a repeat, dropped
    later) would count it twice. A payment or a credit note names its invoice's currency or
    none: in another, it would settle the invoice with money that is not the invoice's."""
    known = dict(taken)
    reasons: list[str | None] = []
    for env in envelopes:
        found = _document(env)
        reason = None
        if found is not None:
            kind, payload = found
            reason = _conflict(env, kind, payload, known)
            if reason is None:
                known.setdefault(
                    env.aggregate_id, Document(env.event_id, kind, payload.amount.currency)
                )
        reasons.append(reason)
    return reasons


def _conflict(
    env: envelope_pb2.Envelope, kind: str, payload: Any, known: Mapping[str, Document]
) -> str | None:
    before = known.get(env.aggregate_id)
    if before is not None and before.type == kind and before.event_id != env.event_id:
        if kind == "invoice.issued":
            return (
                f"invoice_issued.invoice_number: invoice {payload.invoice_number} was issued"
                f" already (event {before.event_id}); an invoice is taken once: resend it"
                " with its first event_id, or give a new invoice a new number"
            )
        if kind == "credit_note.issued":
            return (
                f"credit_note_issued.credit_note_number: credit note"
                f" {payload.credit_note_number} was issued already (event {before.event_id});"
                " a credit note is taken once: resend it with its first event_id, or give a"
                " new credit note a new number"
            )
        return (
            f"payment_received.payment_reference: payment {payload.payment_reference} was"
            f" received already (event {before.event_id}); a payment is taken once: resend it"
            " with its first event_id, or give a new payment a new reference"
        )
    if kind != "invoice.issued" and payload.invoice_number:
        invoice = known.get(aggregate_of("invoice", payload.invoice_number))
        currency = payload.amount.currency
        issued = invoice is not None and invoice.type == "invoice.issued"
        if issued and invoice is not None and invoice.currency != currency:
            case, what = (
                ("payment_received", "a payment")
                if kind == "payment.received"
                else ("credit_note_issued", "a credit note")
            )
            return (
                f"{case}.amount.currency: invoice {payload.invoice_number} is in"
                f" {invoice.currency}, not {currency}; {what} of it is in {invoice.currency}"
                " (convert it in the ERP), or on account without an invoice_number"
            )
    return None
