"""Sales follows ERP: a durable consumer of erp.> (the ERP stream) records each delivery ERP
reports on an order and each invoice that names an order (the order's invoiced amount and
invoice status), and for each overdue invoice schedules a follow-up call with the customer's
responsible employee (the owner in the customer's profile, read from the timeline), so the
customer lands on that employee's call list. Each is one command whose request id is the ERP
event id, so a resend changes nothing; the message is acknowledged only then. A delivery sales
cannot record (no such order, a line it does not have, an order no longer pending, an event id
reused for another delivery) is dead-lettered (deadletter.sales.erp.order.delivered, the reason
in its headers) and acknowledged, and so is an invoice sales cannot record on the order it
names (no such order, another customer's, one not confirmed or unrealised, another currency, a
number recorded on it before: deadletter.sales.erp.invoice.issued; the timeline keeps the
invoice itself), and an overdue notice with an amount or currency the ERP contract refuses or
about a customer c360 does not have (deadletter.sales.erp.invoice.overdue: no call is
scheduled; one about a merged customer is called about on its survivor, one about a forgotten
customer not at all); one that failed for a passing cause (the store away, the timeline away,
a concurrent change) comes again shortly. The timeline dead-letters malformed messages."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date

import nats.errors
from nats.aio.msg import Msg

from c360.erp.v1 import erp_events_pb2 as erp
from c360_platform.commands import blocking
from c360_platform.deadletter import dead_letter
from c360_platform.errors import (
    C360Error,
    DeadlineExceeded,
    NotFound,
    PreconditionFailed,
    Unavailable,
    VersionConflict,
)
from c360_platform.follow import DurableFollower
from c360_platform.store import CommandContext, fingerprint
from c360_platform.streams import StreamSettings, ensure_stream
from c360_platform.validation import Violations
from c360_sales.application import SalesApplication
from c360_sales.spec import ERP_ORDERS

_log = logging.getLogger(__name__)
SUBJECT = "erp.>"
DURABLE = ERP_ORDERS.name
CONSUMER = "sales"
"""How sales names itself in dead letters (deadletter.sales.erp.order.delivered)."""
PASSING = (Unavailable, VersionConflict, DeadlineExceeded)
"""Failures that pass: the message is taken again shortly, not dead-lettered."""
RETRY_SECONDS = 5.0

OwnerOf = Callable[[str], Awaitable[str]]
"""The responsible employee of a customer ("" when unknown)."""
CustomerOf = Callable[[str], Awaitable[str]]
"""The customer an ERP message names, as c360 has it: the id to record on (a merged one's
survivor); NotFound when c360 has no such customer, PreconditionFailed when it was forgotten,
Unavailable when the timeline cannot say now."""


class ErpOrderFollower(DurableFollower):
    """Applies ERP's order deliveries to the sales orders."""

    def __init__(
        self,
        app: SalesApplication,
        nats_url: str,
        owner_of: OwnerOf,
        *,
        batch_size: int = 64,
        customer_of: CustomerOf | None = None,
    ) -> None:
        super().__init__(
            nats_url,
            StreamSettings.inbound(),
            SUBJECT,
            DURABLE,
            name="c360-sales-erp",
            batch_size=batch_size,
        )
        self.app = app
        self.owner_of = owner_of
        self.customer_of = customer_of
        self.applied = 0
        self.dead_letters_ready = False

    async def handle(self, msg: Msg) -> None:
        event = erp.ErpEvent()
        try:
            event.ParseFromString(msg.data)
        except Exception:
            await msg.ack()
            return
        case = event.WhichOneof("event")
        try:
            if case == "order_delivered":
                refused = await self.apply(event)
                if refused is not None and not await self.dead_letter(msg, refused):
                    await msg.nak(delay=RETRY_SECONDS)
                    return
            elif case == "invoice_issued" and event.invoice_issued.order_id:
                refused = await self.invoice(event)
                if refused is not None and not await self.dead_letter(msg, refused):
                    await msg.nak(delay=RETRY_SECONDS)
                    return
            elif case == "invoice_overdue":
                refused = self.overdue_refusal(event.invoice_overdue)
                if refused is None:
                    refused = await self.follow_up(event)
                if refused is not None and not await self.dead_letter(msg, refused):
                    await msg.nak(delay=RETRY_SECONDS)
                    return
        except PASSING as exc:
            _log.warning("ERP event %s: again later: %s", event.event_id, type(exc).__name__)
            await msg.nak(delay=RETRY_SECONDS)
            return
        await msg.ack()

    async def dead_letter(self, msg: Msg, reason: str) -> bool:
        """Keep `msg` on the dead-letter stream with `reason`; False when NATS could not
        take it now (the message comes again)."""
        assert self.nc is not None, "handled while following"
        js = self.nc.jetstream()
        try:
            if not self.dead_letters_ready:
                await ensure_stream(js, StreamSettings.dead_letters())
                self.dead_letters_ready = True
            await dead_letter(js, msg, reason, CONSUMER)
        except (nats.errors.Error, TimeoutError) as exc:
            _log.warning("ERP message not dead-lettered yet: %s", type(exc).__name__)
            return False
        return True

    @staticmethod
    def overdue_refusal(d: erp.InvoiceOverdue) -> str | None:
        """Why an overdue notice is not followed up (for its dead letter): an amount or a
        currency the timeline refuses too (the ERP contract's rules), else None."""
        v = Violations()
        field = "invoice_overdue.amount_due"
        amount = v.decimal(f"{field}.amount", d.amount_due.amount)
        if amount is not None and amount <= 0:
            v.add(f"{field}.amount", "must be more than zero")
        written = d.amount_due.currency
        if v.currency(f"{field}.currency", written) != written:
            v.add(f"{field}.currency", "must be an ISO 4217 code such as EUR, as written")
        if not d.invoice_number.strip():
            v.add("invoice_overdue.invoice_number", "is required")
        return "; ".join(str(x) for x in v.items) or None

    async def follow_up(self, event: erp.ErpEvent) -> str | None:
        """A call for the customer's responsible employee about an overdue invoice (on the
        survivor of a merged customer; none for a forgotten one). The reason for its dead
        letter when c360 has no such customer; a passing failure is raised."""
        d = event.invoice_overdue
        customer_id = event.customer_id
        if self.customer_of is not None:
            try:
                customer_id = await self.customer_of(event.customer_id)
            except NotFound as exc:
                return str(exc)
            except PreconditionFailed:  # forgotten: no one to call, nothing to keep
                _log.info("ERP overdue invoice %s: customer forgotten, no call", event.event_id)
                return None
        ctx = _erp_context(event, "ScheduleActivity")
        try:
            owner = await self.owner_of(customer_id)
            await blocking(
                self.app.schedule_activity,
                ctx,
                kind="call",
                subject=(
                    f"Invoice {d.invoice_number} is {d.days_overdue} days overdue"
                    f" ({d.amount_due.amount} {d.amount_due.currency}): call the customer"
                ),
                due_at=event.occurred_at.ToDatetime(tzinfo=UTC),
                agent_id=owner,
                customer_id=customer_id,
                origin=f"erp invoice overdue {d.invoice_number}",
            )
        except PASSING:
            raise
        except (ValueError, C360Error) as exc:
            _log.warning(
                "ERP overdue invoice %s: no follow-up: %s", event.event_id, type(exc).__name__
            )
        return None

    async def invoice(self, event: erp.ErpEvent) -> str | None:
        """Record an invoice on the order it names; the reason, for its dead letter, when
        sales cannot (no such order, another customer's, one not confirmed or unrealised,
        another currency, a number recorded on it before). A passing failure is raised."""
        d = event.invoice_issued

        async def record(ctx: CommandContext, order_id: uuid.UUID, issued: date) -> str | None:
            order = await blocking(self.app.get_order, order_id)
            if not await self._same_customer(event.customer_id, order.customer_id):
                return (
                    f"invoice_issued.order_id: order {order.order_number} is customer"
                    f" {order.customer_id}'s, not {event.customer_id}'s"
                )
            await blocking(
                self.app.record_invoice,
                ctx,
                order_id,
                erp_event_id=event.event_id,
                invoice_number=d.invoice_number,
                currency=d.amount.currency,
                amount=d.amount.amount,
                issued=issued,
            )
            return None

        return await self._on_order(event, "invoice_issued", "issue_date", "RecordInvoice", record)

    async def _same_customer(self, named: str, owner: str) -> bool:
        """Whether an ERP message's customer is the order's: the same id, or (a merge since)
        the same survivor."""
        if named == owner:
            return True
        if self.customer_of is None:
            return False
        try:
            return await self.customer_of(named) == await self.customer_of(owner)
        except (NotFound, PreconditionFailed):
            return False

    async def apply(self, event: erp.ErpEvent) -> str | None:
        """Record one delivery; the reason (logged) when it names no order of ours or the
        order refuses it, for the dead letter. A passing failure is raised."""
        d = event.order_delivered

        async def record(ctx: CommandContext, order_id: uuid.UUID, on: date) -> str | None:
            await blocking(
                self.app.record_fulfilment,
                ctx,
                order_id,
                erp_event_id=event.event_id,
                delivered={line.line_id: line.quantity for line in d.lines},
                reference=d.delivery_reference,
                on=on,
            )
            return None

        return await self._on_order(
            event, "order_delivered", "delivered_on", "RecordFulfilment", record
        )

    async def _on_order(
        self,
        event: erp.ErpEvent,
        case: str,
        day: str,
        command: str,
        record: Callable[[CommandContext, uuid.UUID, date], Awaitable[str | None]],
    ) -> str | None:
        """An ERP message's command on the order its payload (`case`) names, dated by its
        field `day`: the reason for its dead letter when sales cannot record it (no such
        order, a bad id or date, the order's refusal, or what `record` says); a passing
        failure is raised."""
        d = getattr(event, case)
        try:
            refused = await record(
                _erp_context(event, command),
                uuid.UUID(d.order_id),
                date.fromisoformat(getattr(d, day)),
            )
        except PASSING:
            raise
        except (ValueError, C360Error) as exc:
            _log.warning(
                "ERP %s %s for order %s not recorded: %s",
                case,
                event.event_id,
                d.order_id,
                type(exc).__name__,
            )
            if isinstance(exc, NotFound):
                return f"{case}.order_id: sales has no order {d.order_id}"
            if isinstance(exc, ValueError) and not isinstance(exc, C360Error):
                return f"{case}: order_id must be a UUID, {day} a YYYY-MM-DD date"
            return f"{case}: {exc}"
        if refused is None:
            self.applied += 1
        return refused


def _erp_context(event: erp.ErpEvent, command: str) -> CommandContext:
    """The context of the command an ERP message makes: its request id the ERP event id (a
    resend changes nothing), the message's bytes its fingerprint."""
    return CommandContext(
        command=command,
        request_id=f"erp:{event.event_id}",
        fingerprint=fingerprint(event.SerializeToString(deterministic=True)),
        correlation_id=event.event_id,
        causation_id=event.event_id,
    )
