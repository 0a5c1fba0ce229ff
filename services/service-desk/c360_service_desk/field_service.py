"""Field service: work orders for on-site visits. Pure domain on `eventsourcing.domain`, no I/O.

A work order moves unscheduled -> scheduled (a technician and a time window; it can be
rescheduled) -> travelling -> in progress -> completed, or is cancelled before it completes.
A technician is never booked on two visits at once: a window that overlaps one of the
technician's other visits still to be done (scheduled, travelling, in progress) is refused.
Parts and labour are recorded while the visit is in progress, and a line recorded by mistake
is voided then (never edited: a voided line stays in the history, out of the cost); once the
visit is completed its lines and cost are final. The visit's cost is the sum of its lines, in
the work order's currency. After completion the customer may rate the visit (1-5) once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform import currencies
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed, require_state
from c360_platform.validation import Violations
from c360_service_desk.money import amount, money

MAX_SUMMARY = 200
MAX_NOTE = 5_000
MAX_LINES = 200
MAX_WINDOW = timedelta(days=2)
MAX_QUANTITY = Decimal(10_000)
MAX_UNIT_COST = Decimal(1_000_000)
MAX_LABOUR_MINUTES = 24 * 60


class WorkOrderState(StrEnum):
    UNSCHEDULED = "unscheduled"
    SCHEDULED = "scheduled"
    TRAVELLING = "travelling"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


FINAL = (WorkOrderState.COMPLETED, WorkOrderState.CANCELLED)
BOOKED = (WorkOrderState.SCHEDULED, WorkOrderState.TRAVELLING, WorkOrderState.IN_PROGRESS)
"""The states in which a visit holds its technician's time window."""


@dataclass(frozen=True)
class Booking:
    """A visit a technician is booked for: its work order and time window."""

    work_order_id: str
    window_start: datetime
    window_end: datetime


class WorkOrder(Aggregate):
    """An on-site visit for a customer: who goes when, what they used, what it cost."""

    if TYPE_CHECKING:
        Opened: ClassVar[type[Aggregate.Event]]
        Scheduled: ClassVar[type[Aggregate.Event]]
        TravelStarted: ClassVar[type[Aggregate.Event]]
        WorkStarted: ClassVar[type[Aggregate.Event]]
        PartUsed: ClassVar[type[Aggregate.Event]]
        LabourRecorded: ClassVar[type[Aggregate.Event]]
        LineVoided: ClassVar[type[Aggregate.Event]]
        Completed: ClassVar[type[Aggregate.Event]]
        Cancelled: ClassVar[type[Aggregate.Event]]
        Rated: ClassVar[type[Aggregate.Event]]

    @event("Opened")
    def __init__(
        self,
        customer_id: str,
        summary: str,
        ticket_id: str,
        contract_id: str,
        region: str,
        currency: str,
    ) -> None:
        self.customer_id = customer_id
        self.summary = summary
        self.ticket_id = ticket_id
        self.contract_id = contract_id
        self.region = region
        self.currency = currency
        self.state = WorkOrderState.UNSCHEDULED.value
        self.technician_id = ""
        self.window_start: datetime | None = None
        self.window_end: datetime | None = None
        self.travel_started_at: datetime | None = None
        self.work_started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.fixed = False
        self.lines: list[dict[str, Any]] = []
        self.satisfaction = 0
        self.satisfaction_comment = ""
        self.note = ""
        self.cancel_reason = ""

    @property
    def cost(self) -> Decimal:
        return sum((Decimal(line["cost"]) for line in self.lines), Decimal(0))

    @property
    def labour_minutes(self) -> int:
        return sum(int(line["minutes"]) for line in self.lines if line["kind"] == "labour")

    @property
    def parts_cost(self) -> Decimal:
        return sum(
            (Decimal(line["cost"]) for line in self.lines if line["kind"] == "part"), Decimal(0)
        )

    def _require(self, action: str, *allowed: WorkOrderState) -> None:
        require_state("work order", self.id, self.state, action, allowed)

    def schedule(
        self,
        technician_id: str,
        window_start: datetime,
        window_end: datetime,
        booked: Sequence[Booking] = (),
        now: datetime | None = None,
    ) -> None:
        """Give the visit a technician and a time window (again: a reschedule). `booked`: the
        technician's visits (this one's own booking is ignored); one whose window overlaps
        this window makes it FAILED_PRECONDITION, naming that work order and its window.
        `now`: a window that has ended by then is refused (a visit is booked for a time to
        come; its travel, work and completion are recorded as they happen)."""
        v = Violations()
        technician = v.employee_id("technician_id", technician_id)
        if not technician:
            v.add("technician_id", "is required")
        if window_end <= window_start:
            v.add("window_end", "must be after window_start")
        elif now is not None and window_end <= now:
            v.add("window_end", f"has passed ({_minute(window_end)}): book a time to come")
        elif window_end - window_start > MAX_WINDOW:
            v.add("window_end", "a time window is at most 2 days long")
        v.check()
        self._require("schedule", WorkOrderState.UNSCHEDULED, WorkOrderState.SCHEDULED)
        for other in booked:
            if (
                other.work_order_id != str(self.id)
                and other.window_start < window_end
                and window_start < other.window_end
            ):
                raise PreconditionFailed(
                    f"technician {technician} is booked from {_minute(other.window_start)} to"
                    f" {_minute(other.window_end)} on work order {other.work_order_id}:"
                    " choose another window or technician"
                )
        self._scheduled(self.customer_id, technician, window_start, window_end, self.technician_id)

    @event("Scheduled")
    def _scheduled(
        self,
        customer_id: str,
        technician_id: str,
        window_start: datetime,
        window_end: datetime,
        previous_technician_id: str,
    ) -> None:
        self.technician_id = technician_id
        self.window_start = window_start
        self.window_end = window_end
        self.state = WorkOrderState.SCHEDULED.value

    def start_travel(self, at: datetime) -> None:
        self._require("start travelling for", WorkOrderState.SCHEDULED)
        self._travel_started(self.customer_id, self.technician_id, at)

    @event("TravelStarted")
    def _travel_started(self, customer_id: str, technician_id: str, at: datetime) -> None:
        self.travel_started_at = at
        self.state = WorkOrderState.TRAVELLING.value

    def start_work(self, at: datetime) -> None:
        self._require("start work on", WorkOrderState.TRAVELLING)
        self._work_started(self.customer_id, self.technician_id, at)

    @event("WorkStarted")
    def _work_started(self, customer_id: str, technician_id: str, at: datetime) -> None:
        self.work_started_at = at
        self.state = WorkOrderState.IN_PROGRESS.value

    def _can_add_line(self, v: Violations) -> None:
        v.check()
        self._require("record parts or labour on", WorkOrderState.IN_PROGRESS)
        if len(self.lines) >= MAX_LINES:
            raise PreconditionFailed(f"work order {self.id} has {MAX_LINES} lines already")

    def use_part(self, sku: str, description: str, quantity: str, unit_cost: str) -> str:
        """A part fitted or used up; returns the line's id."""
        v = Violations()
        part = v.tag("sku", sku)
        text = v.text("description", description, required=False, max_len=MAX_SUMMARY)
        qty = amount(v, "quantity", quantity, MAX_QUANTITY, places=3)
        places = currencies.minor_units(self.currency)
        unit = amount(v, "unit_cost", unit_cost, MAX_UNIT_COST, places=places, zero=True)
        self._can_add_line(v)
        assert qty is not None
        assert unit is not None
        line_id = str(uuid.uuid4())
        cost = money(qty * unit, self.currency)
        unit_text = money(unit, self.currency)
        self._part_used(
            self.customer_id, line_id, part, text, str(qty), unit_text, cost, self.currency
        )
        return line_id

    @event("PartUsed")
    def _part_used(
        self,
        customer_id: str,
        line_id: str,
        sku: str,
        description: str,
        quantity: str,
        unit_cost: str,
        cost: str,
        currency: str = "",
    ) -> None:
        self.lines.append(
            {
                "line_id": line_id,
                "kind": "part",
                "sku": sku,
                "description": description,
                "quantity": quantity,
                "unit_cost": unit_cost,
                "cost": cost,
            }
        )

    def record_labour(self, technician_id: str, minutes: int, hourly_rate: str) -> str:
        """Time worked on site (by the visit's technician unless another is named)."""
        v = Violations()
        who = v.employee_id("technician_id", technician_id)
        if not 1 <= minutes <= MAX_LABOUR_MINUTES:
            v.add("minutes", f"must be 1 to {MAX_LABOUR_MINUTES}")
        places = currencies.minor_units(self.currency)
        rate = amount(v, "hourly_rate", hourly_rate, MAX_UNIT_COST, places=places, zero=True)
        self._can_add_line(v)
        assert rate is not None
        line_id = str(uuid.uuid4())
        cost = money(rate * minutes / 60, self.currency)
        self._labour_recorded(
            self.customer_id,
            line_id,
            who or self.technician_id,
            minutes,
            money(rate, self.currency),
            cost,
            self.currency,
        )
        return line_id

    @event("LabourRecorded")
    def _labour_recorded(
        self,
        customer_id: str,
        line_id: str,
        technician_id: str,
        minutes: int,
        hourly_rate: str,
        cost: str,
        currency: str = "",
    ) -> None:
        self.lines.append(
            {
                "line_id": line_id,
                "kind": "labour",
                "technician_id": technician_id,
                "minutes": minutes,
                "hourly_rate": hourly_rate,
                "cost": cost,
            }
        )

    def void_line(self, line_id: str, reason: str) -> str:
        """Take a part or labour line recorded by mistake out of the visit's cost (while in
        progress); `line_id` may be the line's id or a unique beginning of it (8 characters
        at least). Returns the voided line's id."""
        v = Violations()
        wanted = line_id.strip().lower()
        if len(wanted) < 8:
            v.add("line_id", "is required: a line's id (or its first 8 characters at least)")
        why = v.text("reason", reason, max_len=MAX_SUMMARY)
        v.check()
        self._require("void a line of", WorkOrderState.IN_PROGRESS)
        found = [line for line in self.lines if line["line_id"].startswith(wanted)]
        if not found:
            raise NotFound(f"work order {self.id} has no line {line_id.strip()} (line_id)")
        if len(found) > 1:
            raise InvalidArgument.one("line_id", f"{line_id.strip()} begins several lines' ids")
        line = found[0]
        self._line_voided(self.customer_id, line["line_id"], why, line["cost"], self.currency)
        return str(line["line_id"])

    @event("LineVoided")
    def _line_voided(
        self, customer_id: str, line_id: str, reason: str, cost: str, currency: str
    ) -> None:
        self.lines = [line for line in self.lines if line["line_id"] != line_id]

    def complete(self, fixed: bool, note: str, at: datetime) -> None:
        """The visit ended; `fixed`: the problem is solved (no further visit needed)."""
        v = Violations()
        text = v.paragraphs("note", note, required=False, max_len=MAX_NOTE)
        v.check()
        self._require("complete", WorkOrderState.IN_PROGRESS)
        self._completed(
            self.customer_id,
            fixed,
            text,
            money(self.cost, self.currency),
            self.currency,
            at,
            self.contract_id,
        )

    @event("Completed")
    def _completed(
        self,
        customer_id: str,
        fixed: bool,
        note: str,
        cost: str,
        currency: str,
        at: datetime,
        contract_id: str = "",
    ) -> None:
        self.fixed = fixed
        self.note = note
        self.completed_at = at
        self.state = WorkOrderState.COMPLETED.value

    def cancel(self, reason: str) -> None:
        v = Violations()
        why = v.text("reason", reason, max_len=MAX_SUMMARY)
        v.check()
        self._require(
            "cancel",
            WorkOrderState.UNSCHEDULED,
            WorkOrderState.SCHEDULED,
            WorkOrderState.TRAVELLING,
            WorkOrderState.IN_PROGRESS,
        )
        self._cancelled(
            self.customer_id, why, self.state, money(self.cost, self.currency), self.currency
        )

    @event("Cancelled")
    def _cancelled(
        self,
        customer_id: str,
        reason: str,
        previous_state: str,
        cost: str = "",
        currency: str = "",
    ) -> None:
        self.cancel_reason = reason
        self.state = WorkOrderState.CANCELLED.value

    def rate(self, score: int, comment: str) -> None:
        """The customer's satisfaction with the completed visit, once."""
        v = Violations()
        if not 1 <= score <= 5:
            v.add("score", "must be 1 to 5")
        text = v.paragraphs("comment", comment, required=False, max_len=MAX_NOTE)
        v.check()
        self._require("rate", WorkOrderState.COMPLETED)
        if self.satisfaction:
            raise PreconditionFailed(
                f"work order {self.id} was rated already ({self.satisfaction}/5)"
            )
        self._rated(self.customer_id, score, text)

    @event("Rated")
    def _rated(self, customer_id: str, score: int, comment: str) -> None:
        self.satisfaction = score
        self.satisfaction_comment = comment


def _minute(at: datetime) -> str:
    """A moment as the dispatcher reads it: `2026-12-09 09:00 UTC`."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def create_work_order(
    *,
    customer_id: str,
    summary: str,
    ticket_id: str,
    contract_id: str,
    region: str,
    currency: str,
) -> WorkOrder:
    """Validate (every offending field at once) and create an unscheduled work order."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    text = v.text("summary", summary, max_len=MAX_SUMMARY)
    ticket = v.uuid("ticket_id", ticket_id.strip()) if ticket_id.strip() else ""
    contract = v.uuid("contract_id", contract_id.strip()) if contract_id.strip() else ""
    area = v.tag("region", region) if region.strip() else ""
    code = v.currency("currency", currency, default="EUR")
    v.check()
    return WorkOrder(
        customer_id=customer,
        summary=text,
        ticket_id=ticket,
        contract_id=contract,
        region=area or "-",
        currency=code,
    )
