"""Field service through the service desk's servicer in memory: the work-order lifecycle,
parts, labour and cost, satisfaction, and the report (cost per visit, time to complete,
first-time fixes, satisfaction by technician and region)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from c360.events.v1 import field_service_events_pb2 as fev
from c360.events.v1 import service_contract_events_pb2 as scev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.envelope import Publication, pack
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed
from c360_platform.validation import Violations
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT
from c360_service_desk.field_service import create_work_order
from c360_service_desk.money import amount
from c360_service_desk.reports import Visit, field_service_report
from c360_service_desk.service_contracts import ServiceContract
from c360_timeline.projection import Entry, entry_for
from c360_timeline.query import profile_message

from .support import CALL, Clock, KnownCustomers, bad_fields, outcome_lookups, refused
from .test_service_desk_application import open_ticket
from .test_ticket_projection import replay

NOW = datetime.now(UTC)
"""Work orders take their creation time from the wall clock (the event's timestamp)."""


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def desk(clock: Clock) -> ServiceDeskServicer:
    return ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), KnownCustomers())


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


async def visit(
    desk: ServiceDeskServicer,
    clock: Clock,
    *,
    technician: str = "emp-7",
    region: str = "north",
    ticket_id: str = "",
    customer_id: str = "",
    fixed: bool = True,
    score: int = 0,
) -> str:
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=customer_id or str(uuid4()),
            summary="Router replacement",
            ticket_id=ticket_id,
            region=region,
            allow_unknown_customer=True,
        ),
        CALL,
    )
    wid = made.result.aggregate_id
    await desk.ScheduleWorkOrder(
        dapi.ScheduleWorkOrderRequest(
            work_order_id=wid,
            technician_id=technician,
            window_start=ts(clock.now + timedelta(hours=1)),
            window_end=ts(clock.now + timedelta(hours=3)),
        ),
        CALL,
    )
    clock.advance(hours=1)
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=wid), CALL)
    clock.advance(minutes=30)
    await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid), CALL)
    await desk.RecordWorkOrderPart(
        dapi.RecordWorkOrderPartRequest(
            work_order_id=wid, sku="rtr-200", quantity="1", unit_cost="89.90"
        ),
        CALL,
    )
    await desk.RecordWorkOrderLabour(
        dapi.RecordWorkOrderLabourRequest(work_order_id=wid, minutes=90, hourly_rate="60.00"),
        CALL,
    )
    clock.advance(minutes=90)
    await desk.CompleteWorkOrder(
        dapi.CompleteWorkOrderRequest(work_order_id=wid, fixed=fixed, note="swapped"), CALL
    )
    if score:
        await desk.RateWorkOrder(dapi.RateWorkOrderRequest(work_order_id=wid, score=score), CALL)
    return wid


async def test_a_visit_runs_its_course_and_costs_its_lines(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    wid = await visit(desk, clock, score=4)
    got = (await desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=wid), CALL)).work_order
    assert got.state == fev.WORK_ORDER_STATE_COMPLETED
    assert (got.cost, got.currency, got.satisfaction, got.fixed) == ("179.90", "EUR", 4, True)
    assert [(line.kind, line.cost) for line in got.lines] == [
        ("part", "89.90"),
        ("labour", "90.00"),
    ]
    events = list(desk.app.repository.event_store.get(UUID(wid)))
    assert [type(e).__name__ for e in events] == [
        "Opened",
        "Scheduled",
        "TravelStarted",
        "WorkStarted",
        "PartUsed",
        "LabourRecorded",
        "Completed",
        "Rated",
    ]
    completed = CONTRACT.publication(events[6]).payload
    assert isinstance(completed, fev.WorkOrderCompleted)
    assert (completed.cost, completed.currency) == ("179.90", "EUR")
    # Each line names its currency: an ERP bills it from that event alone.
    part, labour = (CONTRACT.publication(e).payload for e in events[4:6])
    assert isinstance(part, fev.WorkOrderPartUsed)
    assert isinstance(labour, fev.WorkOrderLabourRecorded)
    assert (part.unit_cost, part.cost, part.currency) == ("89.90", "89.90", "EUR")
    assert (labour.hourly_rate, labour.cost, labour.currency) == ("60.00", "90.00", "EUR")
    # Rated once; completed is final.
    error = await refused(
        desk.RateWorkOrder(dapi.RateWorkOrderRequest(work_order_id=wid, score=5), CALL),
        PreconditionFailed,
    )
    assert "rated already" in str(error)
    error = await refused(
        desk.CancelWorkOrder(dapi.CancelWorkOrderRequest(work_order_id=wid, reason="x"), CALL),
        PreconditionFailed,
    )
    assert "is completed" in str(error)
    listed = await desk.ListWorkOrders(dapi.ListWorkOrdersRequest(technician_id="emp-7"), CALL)
    assert [(w.work_order_id, w.cost) for w in listed.work_orders] == [(wid, "179.90")]


async def test_a_work_order_shows_what_was_written_about_it(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    # The technician's note, the customer's comment and a cancellation's reason were on the
    # timeline only: GetWorkOrder (visit show) did not have them.
    wid = await visit(desk, clock)
    await desk.RateWorkOrder(
        dapi.RateWorkOrderRequest(work_order_id=wid, score=2, comment="Came late"), CALL
    )
    got = (await desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=wid), CALL)).work_order
    assert (got.note, got.satisfaction_comment, got.cancel_reason) == ("swapped", "Came late", "")
    assert got.travel_started_at.ToDatetime() < got.work_started_at.ToDatetime()
    other = await _requested(desk, "Heat pump")
    await desk.CancelWorkOrder(
        dapi.CancelWorkOrderRequest(work_order_id=other, reason="Customer not home"), CALL
    )
    got = (await desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=other), CALL)).work_order
    assert (got.state, got.cancel_reason) == (fev.WORK_ORDER_STATE_CANCELLED, "Customer not home")
    # A visit broken off after parts were fitted says what they cost, for the ERP.
    third = await _requested(desk, "Heat pump repair")
    await desk.ScheduleWorkOrder(_booking(third, "emp-8", clock.now + timedelta(hours=1), 2), CALL)
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=third), CALL)
    await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=third), CALL)
    await desk.RecordWorkOrderPart(
        dapi.RecordWorkOrderPartRequest(
            work_order_id=third, sku="valve", quantity="2", unit_cost="12.50"
        ),
        CALL,
    )
    await desk.CancelWorkOrder(
        dapi.CancelWorkOrderRequest(work_order_id=third, reason="Wrong model"), CALL
    )
    events = list(desk.app.repository.event_store.get(UUID(third)))
    cancelled = CONTRACT.publication(events[-1]).payload
    assert isinstance(cancelled, fev.WorkOrderCancelled)
    assert (cancelled.cost, cancelled.currency, cancelled.previous_state) == (
        "25.00",
        "EUR",
        fev.WORK_ORDER_STATE_IN_PROGRESS,
    )
    envelope = pack(
        source="service-desk",
        publication=Publication("work_order", str(uuid4()), cancelled),
        aggregate_id=UUID(third),
        aggregate_version=len(events),
        position=1,
        occurred_at=clock.now,
    )
    assert entry_for(envelope).summary == "On-site visit cancelled, 25.00 EUR spent: Wrong model"


async def test_a_line_recorded_by_mistake_is_voided_while_the_visit_is_in_progress(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    # A wrong part or labour line could not be taken back: lines take no negative quantity,
    # none is recorded after completion, and there was no command to void one.
    wid = await _requested(desk, "Heat pump fan")
    await desk.ScheduleWorkOrder(_booking(wid, "emp-7", clock.now + timedelta(hours=1), 2), CALL)
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=wid), CALL)
    await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid), CALL)

    async def part(quantity: str) -> str:
        reply = await desk.RecordWorkOrderPart(
            dapi.RecordWorkOrderPartRequest(
                work_order_id=wid, sku="fan-12", quantity=quantity, unit_cost="40.00"
            ),
            CALL,
        )
        return reply.line_id

    wrong, right = await part("10"), await part("1")
    stored = desk.app.head()
    for line_id, error_kind in [(str(uuid4()), NotFound), ("", InvalidArgument)]:
        await refused(
            desk.VoidWorkOrderLine(
                dapi.VoidWorkOrderLineRequest(work_order_id=wid, line_id=line_id, reason="x"),
                CALL,
            ),
            error_kind,
        )
    assert desk.app.head() == stored
    voided = await desk.VoidWorkOrderLine(
        dapi.VoidWorkOrderLineRequest(work_order_id=wid, line_id=wrong[:8], reason="typo: 10"),
        CALL,
    )
    assert voided.line_id == wrong
    got = (await desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=wid), CALL)).work_order
    assert ([line.line_id for line in got.lines], got.cost) == ([right], "40.00")
    event = list(desk.app.repository.event_store.get(UUID(wid)))[-1]
    published = CONTRACT.publication(event).payload
    assert isinstance(published, fev.WorkOrderLineVoided)
    assert (published.line_id, published.cost, published.currency) == (wrong, "400.00", "EUR")
    customer = desk.app.get_work_order(UUID(wid)).customer_id
    envelope = pack(
        source="service-desk",
        publication=Publication("work_order", customer, published),
        aggregate_id=UUID(wid),
        aggregate_version=event.originator_version,
        position=1,
        occurred_at=clock.now,
    )
    assert entry_for(envelope).summary == (
        f"Line {wrong[:8]} voided (400.00 EUR off the visit's cost): typo: 10"
    )
    # Voided once; after completion the lines are final.
    await refused(
        desk.VoidWorkOrderLine(
            dapi.VoidWorkOrderLineRequest(work_order_id=wid, line_id=wrong, reason="x"), CALL
        ),
        NotFound,
    )
    await desk.CompleteWorkOrder(dapi.CompleteWorkOrderRequest(work_order_id=wid), CALL)
    error = await refused(
        desk.VoidWorkOrderLine(
            dapi.VoidWorkOrderLineRequest(work_order_id=wid, line_id=right, reason="x"), CALL
        ),
        PreconditionFailed,
    )
    assert "is completed" in str(error)


def test_a_reschedule_reads_as_one_on_the_timeline() -> None:
    # Every booking read "On-site visit scheduled with …": a reschedule, or a change of
    # technician, could not be told from the first booking.
    def summary(technician: str, previous: str) -> str:
        scheduled = fev.WorkOrderScheduled(
            customer_id=str(uuid4()),
            technician_id=technician,
            window_start=ts(datetime(2026, 12, 9, 13, tzinfo=UTC)),
            window_end=ts(datetime(2026, 12, 9, 14, tzinfo=UTC)),
            previous_technician_id=previous,
        )
        envelope = pack(
            source="service-desk",
            publication=Publication("work_order", scheduled.customer_id, scheduled),
            aggregate_id=uuid4(),
            aggregate_version=2,
            position=1,
            occurred_at=NOW,
        )
        return entry_for(envelope).summary

    window = "2026-12-09 13:00 UTC to 14:00 UTC"
    assert summary("emp-1", "") == f"On-site visit scheduled with emp-1, {window}"
    assert summary("emp-1", "emp-1") == f"On-site visit rescheduled with emp-1, {window}"
    assert summary("emp-2", "emp-1") == (
        f"On-site visit rescheduled with emp-2 (instead of emp-1), {window}"
    )


async def test_a_visits_labour_uses_the_hours_of_its_contract(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    # Two hours on site under a "10 h" contract left its 600 minutes untouched.
    ada = str(uuid4())
    today = clock.now.date()
    terms = {
        "customer_id": ada,
        "name": "Heat pump hours",
        "starts_on": (today - timedelta(days=30)).isoformat(),
        "ends_on": (today + timedelta(days=300)).isoformat(),
        "allowance": 10,
    }
    hours = (
        await desk.CreateServiceContract(
            dapi.CreateServiceContractRequest(**terms, allowance_unit=scev.ALLOWANCE_UNIT_HOURS),  # type: ignore[arg-type]
            CALL,
        )
    ).result.aggregate_id
    cases = (
        await desk.CreateServiceContract(
            dapi.CreateServiceContractRequest(**terms, allowance_unit=scev.ALLOWANCE_UNIT_CASES),  # type: ignore[arg-type]
            CALL,
        )
    ).result.aggregate_id
    for contract_id in (hours, cases):
        made = await desk.CreateWorkOrder(
            dapi.CreateWorkOrderRequest(
                customer_id=ada, summary="Service", contract_id=contract_id
            ),
            CALL,
        )
        wid = made.result.aggregate_id
        start = clock.now + timedelta(hours=1 if contract_id == hours else 4)
        await desk.ScheduleWorkOrder(_booking(wid, "emp-7", start, 2), CALL)
        await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=wid), CALL)
        await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid), CALL)
        for minutes in (90, 30):
            await desk.RecordWorkOrderLabour(
                dapi.RecordWorkOrderLabourRequest(
                    work_order_id=wid, minutes=minutes, hourly_rate="80.00"
                ),
                CALL,
            )
        await desk.CompleteWorkOrder(dapi.CompleteWorkOrderRequest(work_order_id=wid), CALL)

    def shown(contract_id: str) -> tuple[int, int]:
        contract = desk.app.load(ServiceContract, UUID(contract_id))
        return contract.used(today), contract.remaining(today) or 0

    assert shown(hours) == (120, 480)
    assert shown(cases) == (0, 10)  # a case is its ticket's to use
    consumed = list(desk.app.repository.event_store.get(UUID(hours)))[-1]
    published = CONTRACT.publication(consumed).payload
    assert isinstance(published, scev.ServiceContractConsumed)
    assert (published.amount, published.ticket_id) == (120, "")
    assert published.work_order_id


async def test_illegal_steps_name_the_state(desk: ServiceDeskServicer) -> None:
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=str(uuid4()), summary="Dish alignment", allow_unknown_customer=True
        ),
        CALL,
    )
    wid = made.result.aggregate_id
    error = await refused(
        desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid), CALL),
        PreconditionFailed,
    )
    assert "is unscheduled" in str(error)
    error = await refused(
        desk.RecordWorkOrderPart(
            dapi.RecordWorkOrderPartRequest(
                work_order_id=wid, sku="x", quantity="1", unit_cost="1"
            ),
            CALL,
        ),
        PreconditionFailed,
    )
    assert "only when in progress" in str(error)
    await desk.CancelWorkOrder(
        dapi.CancelWorkOrderRequest(work_order_id=wid, reason="no need"), CALL
    )
    error = await refused(
        desk.ScheduleWorkOrder(
            dapi.ScheduleWorkOrderRequest(
                work_order_id=wid,
                technician_id="emp-1",
                window_start=ts(NOW),
                window_end=ts(NOW + timedelta(hours=1)),
            ),
            CALL,
        ),
        PreconditionFailed,
    )
    assert "is cancelled" in str(error)


async def _requested(desk: ServiceDeskServicer, summary: str) -> str:
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=str(uuid4()), summary=summary, allow_unknown_customer=True
        ),
        CALL,
    )
    return made.result.aggregate_id


def _booking(wid: str, technician: str, start: datetime, hours: int) -> Any:
    return dapi.ScheduleWorkOrderRequest(
        work_order_id=wid,
        technician_id=technician,
        window_start=ts(start),
        window_end=ts(start + timedelta(hours=hours)),
    )


async def test_a_technician_is_never_booked_on_two_visits_at_once(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    nine = (clock.now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    first = await _requested(desk, "Heat pump fan")
    second = await _requested(desk, "Heat pump service")
    await desk.ScheduleWorkOrder(_booking(first, "emp-1101", nine, 3), CALL)
    # 10:00-11:00 lies inside 09:00-12:00: refused, naming the visit that holds the time.
    error = await refused(
        desk.ScheduleWorkOrder(_booking(second, "emp-1101", nine + timedelta(hours=1), 1), CALL),
        PreconditionFailed,
    )
    assert f"emp-1101 is booked from {nine:%Y-%m-%d} 09:00 UTC to" in str(error)
    assert first in str(error)
    got = await desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=second), CALL)
    assert got.work_order.state == fev.WORK_ORDER_STATE_UNSCHEDULED
    # Back to back, another technician, or moving the first visit within its own window: fine.
    await desk.ScheduleWorkOrder(_booking(second, "emp-1101", nine + timedelta(hours=3), 2), CALL)
    await desk.ScheduleWorkOrder(_booking(first, "emp-1101", nine + timedelta(hours=1), 2), CALL)
    third = await _requested(desk, "Heat pump noise")
    await desk.ScheduleWorkOrder(_booking(third, "emp-1102", nine, 3), CALL)
    # A visit on the way or under way still holds the time; a cancelled one frees it.
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=third), CALL)
    fourth = await _requested(desk, "Heat pump check")
    await refused(
        desk.ScheduleWorkOrder(_booking(fourth, "emp-1102", nine, 1), CALL), PreconditionFailed
    )
    await desk.CancelWorkOrder(dapi.CancelWorkOrderRequest(work_order_id=third, reason="x"), CALL)
    await desk.ScheduleWorkOrder(_booking(fourth, "emp-1102", nine, 1), CALL)


async def test_bad_work_orders_name_every_field(desk: ServiceDeskServicer) -> None:
    assert await bad_fields(
        desk.CreateWorkOrder(
            dapi.CreateWorkOrderRequest(
                customer_id="nobody",
                summary="",
                ticket_id="t-1",
                currency="euro",
                allow_unknown_customer=True,
            ),
            CALL,
        )
    ) == ["currency", "customer_id", "summary", "ticket_id"]
    assert desk.app.head() == 0
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=str(uuid4()), summary="x", allow_unknown_customer=True
        ),
        CALL,
    )
    assert await bad_fields(
        desk.ScheduleWorkOrder(
            dapi.ScheduleWorkOrderRequest(
                work_order_id=made.result.aggregate_id,
                window_start=ts(NOW + timedelta(hours=2)),
                window_end=ts(NOW),
            ),
            CALL,
        )
    ) == ["technician_id", "window_end"]


async def _contract(desk: ServiceDeskServicer, customer_id: str, days: tuple[int, int]) -> str:
    """A contract of the customer's from and to these days from today."""
    today = desk.app.clock().date()
    made = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=customer_id,
            name="Care",
            starts_on=(today + timedelta(days=days[0])).isoformat(),
            ends_on=(today + timedelta(days=days[1])).isoformat(),
        ),
        CALL,
    )
    return made.result.aggregate_id


async def test_a_visit_is_not_sent_for_a_closed_ticket(desk: ServiceDeskServicer) -> None:
    # A visit could name a closed ticket, or a duplicate merged into another: its work was
    # then recorded on a ticket nobody reads any more.
    ada = str(uuid4())
    closed, duplicate, survivor = [await open_ticket(desk, ada) for _ in range(3)]
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=closed, resolution="ok"), CALL)
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=closed), CALL)
    await desk.MergeTickets(
        dapi.MergeTicketsRequest(
            survivor_ticket_id=survivor, duplicate_ticket_id=duplicate, reason="same"
        ),
        CALL,
    )
    stored = desk.app.head()
    for ticket_id, words in [
        (closed, "open a new ticket"),
        (duplicate, f"it was merged into ticket {survivor}, name that one"),
    ]:
        error = await refused(
            desk.CreateWorkOrder(
                dapi.CreateWorkOrderRequest(customer_id=ada, summary="Leak", ticket_id=ticket_id),
                CALL,
            ),
            PreconditionFailed,
        )
        assert f"ticket {ticket_id} is closed: {words}" in str(error)
    assert desk.app.head() == stored
    await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(customer_id=ada, summary="Leak", ticket_id=survivor), CALL
    )


async def test_a_visit_does_not_fall_under_an_expired_or_future_contract(
    desk: ServiceDeskServicer,
) -> None:
    ada = str(uuid4())
    ended = await _contract(desk, ada, days=(-400, -35))
    future = await _contract(desk, ada, days=(10, 375))
    stored = desk.app.head()
    for contract_id, words in [(ended, "is expired"), (future, "is not yet valid")]:
        error = await refused(
            desk.CreateWorkOrder(
                dapi.CreateWorkOrderRequest(
                    customer_id=ada, summary="Heat pump", contract_id=contract_id
                ),
                CALL,
            ),
            PreconditionFailed,
        )
        assert f"service contract {contract_id} “Care” {words}" in str(error)
    assert desk.app.head() == stored
    current = await _contract(desk, ada, days=(-35, 330))
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(customer_id=ada, summary="Heat pump", contract_id=current),
        CALL,
    )
    wid = made.result.aggregate_id
    assert desk.app.get_work_order(UUID(wid)).contract_id == current
    # The completion an ERP bills from says whether the visit falls under the contract.
    await desk.ScheduleWorkOrder(
        _booking(wid, "emp-7", desk.app.clock() + timedelta(hours=1), 1), CALL
    )
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=wid), CALL)
    await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid), CALL)
    await desk.CompleteWorkOrder(dapi.CompleteWorkOrderRequest(work_order_id=wid), CALL)
    completed = CONTRACT.publication(list(desk.app.repository.event_store.get(UUID(wid)))[-1])
    assert isinstance(completed.payload, fev.WorkOrderCompleted)
    assert completed.payload.contract_id == current


async def test_a_work_order_names_only_its_customers_ticket_and_contract(
    desk: ServiceDeskServicer,
) -> None:
    ada, bob = str(uuid4()), str(uuid4())
    adas_ticket, bobs_ticket = await open_ticket(desk, ada), await open_ticket(desk, bob)

    async def contract(customer_id: str) -> str:
        return await _contract(desk, customer_id, days=(-30, 300))

    adas_contract, bobs_contract = await contract(ada), await contract(bob)

    def ordering(ticket_id: str = "", contract_id: str = "") -> dapi.CreateWorkOrderRequest:
        return dapi.CreateWorkOrderRequest(
            customer_id=ada, summary="Router", ticket_id=ticket_id, contract_id=contract_id
        )

    stored = desk.app.head()
    for request in (ordering(ticket_id=str(uuid4())), ordering(contract_id=ada)):
        await refused(desk.CreateWorkOrder(request, CALL), NotFound)
    for request, field in [
        (ordering(ticket_id=bobs_ticket), "ticket_id"),
        (ordering(ticket_id=adas_ticket, contract_id=bobs_contract), "contract_id"),
    ]:
        error = await refused(desk.CreateWorkOrder(request, CALL), InvalidArgument)
        assert isinstance(error, InvalidArgument)
        assert [v.field for v in error.violations] == [field]
        assert f"is customer {bob}'s, not {ada}'s" in error.violations[0].description
    assert desk.app.head() == stored
    made = await desk.CreateWorkOrder(ordering(adas_ticket, adas_contract), CALL)
    order = desk.app.get_work_order(UUID(made.result.aggregate_id))
    assert (order.ticket_id, order.contract_id) == (adas_ticket, adas_contract)


async def test_a_window_that_has_passed_is_refused(desk: ServiceDeskServicer, clock: Clock) -> None:
    # A window of last month (a typo for next month) was booked without a word.
    wid = await _requested(desk, "Heat pump fan")
    stored = desk.app.head()
    error = await refused(
        desk.ScheduleWorkOrder(_booking(wid, "emp-7", clock.now - timedelta(days=30), 3), CALL),
        InvalidArgument,
    )
    assert isinstance(error, InvalidArgument)
    assert [v.field for v in error.violations] == ["window_end"]
    assert "has passed" in error.violations[0].description
    assert desk.app.head() == stored
    # A window under way (the technician is there now) is fine.
    await desk.ScheduleWorkOrder(_booking(wid, "emp-7", clock.now - timedelta(hours=1), 3), CALL)


async def test_a_ticket_shows_its_visits_and_the_list_filters_by_ticket(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    ada = str(uuid4())
    tid = await open_ticket(desk, ada)
    first = await visit(desk, clock, customer_id=ada, ticket_id=tid, fixed=False)
    again = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(customer_id=ada, summary="Second visit", ticket_id=tid),
        CALL,
    )
    await visit(desk, clock, customer_id=ada)  # not about the ticket
    got = await desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid), CALL)
    assert [(w.work_order_id, w.state) for w in got.work_orders] == [
        (again.result.aggregate_id, fev.WORK_ORDER_STATE_UNSCHEDULED),
        (first, fev.WORK_ORDER_STATE_COMPLETED),
    ]
    assert (got.work_orders[1].technician_id, got.work_orders[1].cost) == ("emp-7", "179.90")
    listed = await desk.ListWorkOrders(dapi.ListWorkOrdersRequest(ticket_id=tid), CALL)
    assert [w.work_order_id for w in listed.work_orders] == [
        w.work_order_id for w in got.work_orders
    ]
    assert await bad_fields(
        desk.ListWorkOrders(dapi.ListWorkOrdersRequest(ticket_id="t-1"), CALL)
    ) == ["ticket_id"]


async def test_the_report_counts_first_time_fixes_per_ticket(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    start = clock.now
    customer = str(uuid4())
    ticket = await open_ticket(desk, customer)
    # Two visits on one ticket: the first did not fix it, so neither is a first-time fix.
    await visit(desk, clock, ticket_id=ticket, customer_id=customer, fixed=False, score=2)
    await visit(desk, clock, ticket_id=ticket, customer_id=customer, fixed=True, score=4)
    await visit(desk, clock, technician="emp-8", region="south", fixed=True, score=5)
    report = await desk.GetFieldServiceReport(
        dapi.GetFieldServiceReportRequest(
            completed_from=ts(start), completed_to=ts(clock.now + timedelta(seconds=1))
        ),
        CALL,
    )
    rows = {(r.dimension, r.value): r for r in report.rows}
    assert rows[("all", "-")].visits == 3
    assert rows[("all", "-")].cost_per_visit == "179.90"
    assert rows[("technician", "emp-7")].first_time_fixes == 0
    assert rows[("technician", "emp-8")].first_time_fix_rate == 1.0
    assert rows[("technician", "emp-7")].mean_satisfaction == 3.0
    assert rows[("region", "south")].mean_satisfaction == 5.0
    assert rows[("region", "north")].median_hours_on_site == 1.5


@given(
    lines=st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("0.001"), max_value=Decimal(999), places=3),
            st.decimals(min_value=Decimal(0), max_value=Decimal(9999), places=2),
        ),
        max_size=8,
    )
)
def test_the_cost_is_the_sum_of_the_lines_rounded_per_line(
    lines: list[tuple[Decimal, Decimal]],
) -> None:
    w = create_work_order(
        customer_id=str(uuid4()), summary="x", ticket_id="", contract_id="", region="", currency=""
    )
    w.schedule("emp-1", NOW, NOW + timedelta(hours=1))
    w.start_travel(NOW)
    w.start_work(NOW)
    for qty, unit in lines:
        w.use_part("p-1", "", str(qty), str(unit))
    cent = Decimal("0.01")
    expected = sum(((q * u).quantize(cent, ROUND_HALF_UP) for q, u in lines), Decimal(0))
    assert w.cost == expected


def test_a_visit_in_yen_costs_whole_yen_and_takes_no_fractions() -> None:
    """JPY has no minor unit (ISO 4217): a part's unit cost with sen is refused, and labour
    is rounded half up to whole yen, as sales rounds its amounts."""
    w = create_work_order(
        customer_id=str(uuid4()), summary="x", ticket_id="", contract_id="", region="",
        currency="JPY",
    )  # fmt: skip
    w.schedule("emp-1", NOW, NOW + timedelta(hours=1))
    w.start_travel(NOW)
    w.start_work(NOW)
    with pytest.raises(InvalidArgument) as caught:
        w.use_part("p-1", "", "1", "1500.5")
    assert [v.field for v in caught.value.violations] == ["unit_cost"]
    assert w.lines == []
    w.use_part("p-1", "", "3", "1500")
    w.record_labour("emp-1", 45, "4999")  # 3749.25
    assert [line["cost"] for line in w.lines] == ["4500", "3749"]
    assert w.cost == Decimal("8249")


def test_amounts_are_checked() -> None:
    for text, ok in (("1", True), ("0.5", True), ("-1", False), ("nan", False), ("1.001", False)):
        v = Violations()
        assert (amount(v, "x", text, Decimal(100), places=2) is not None) == ok
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = field_service_report(
        [
            Visit("a", "n", "EUR", Decimal("10"), t0, None, t0 + timedelta(hours=4), True, 0),
            Visit("a", "n", "USD", Decimal("30"), t0, None, t0 + timedelta(hours=2), False, 3),
        ]
    )
    # Costs in different currencies are never added up.
    assert [
        (r["dimension"], r["currency"], r["total_cost"]) for r in rows if r["dimension"] == "all"
    ] == [
        ("all", "EUR", "10.00"),
        ("all", "USD", "30.00"),
    ]


async def test_visits_show_on_the_timeline_and_in_the_profile(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    wid = await visit(desk, clock, score=5)
    other = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=str(uuid4()), summary="Second visit", allow_unknown_customer=True
        ),
        CALL,
    )
    # Both visits' events as one customer's (the second was made for another id).
    customer = desk.app.get_work_order(UUID(wid)).customer_id
    entries: list[Entry] = []
    for aggregate in (wid, other.result.aggregate_id):
        for n, event in enumerate(desk.app.repository.event_store.get(UUID(aggregate))):
            payload = CONTRACT.publication(event).payload
            envelope = pack(
                source="service-desk",
                publication=Publication("work_order", customer, payload),
                aggregate_id=UUID(aggregate),
                aggregate_version=n + 1,
                position=len(entries) + 1,
                occurred_at=clock.now,
            )
            entries.append(entry_for(envelope))
    summaries = [e.summary for e in entries]
    assert "On-site visit completed (fixed), cost 179.90 EUR: swapped" in summaries
    assert "Customer rated the on-site visit 5/5" in summaries
    assert "Part rtr-200, quantity 1, used (89.90 EUR)" in summaries
    assert "Labour 90 min by emp-7 recorded (90.00 EUR)" in summaries
    assert any(s.startswith("On-site visit scheduled with emp-7, ") for s in summaries)
    profile, _ = replay(entries)
    shown = profile_message(profile, now=clock.now).service_desk
    assert (shown.visits_completed, shown.visit_ratings, shown.mean_visit_satisfaction) == (
        1,
        1,
        5.0,
    )
    assert [(w.summary, w.state) for w in shown.open_work_orders] == [
        ("Second visit", "unscheduled")
    ]


async def test_a_work_order_created_again_with_its_request_id_replays_the_first_answer(
    desk: ServiceDeskServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateWorkOrder decides from its input alone: no look for its request id first; a
    retry is told when its append meets the recorded id, and answered as the first time."""
    looked_up = outcome_lookups(monkeypatch, desk.app)
    request = dapi.CreateWorkOrderRequest(
        request_id="wo-1",
        customer_id=str(uuid4()),
        summary="Router replacement",
        region="north",
        allow_unknown_customer=True,
    )
    first = await desk.CreateWorkOrder(request, CALL)
    assert looked_up == []
    head = desk.app.head()
    again = await desk.CreateWorkOrder(request, CALL)
    assert looked_up == ["wo-1"]
    assert (again.result.aggregate_id, again.result.replayed) == (first.result.aggregate_id, True)
    assert desk.app.head() == head
