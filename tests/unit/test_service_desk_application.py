"""The service desk's application and API in memory: idempotent replay, conflicts, bad
input, illegal transitions and list paging, with no servers."""

from __future__ import annotations

import asyncio
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from c360.events.v1 import ticket_events_pb2 as ev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.context import ContextReader
from c360_platform.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PreconditionFailed,
    VersionConflict,
)
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT
from c360_service_desk.domain import Ticket

from .support import CALL, CallContext, Clock, bad_fields, refused


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def desk(clock: Clock) -> ServiceDeskServicer:
    # The context reader is never asked here (GetTicket is not called).
    return ServiceDeskServicer(
        ServiceDeskApplication.in_memory(clock=clock), ContextReader("127.0.0.1:1")
    )


def opening(customer_id: str, subject: str = "Parcel lost", request_id: str = "") -> Any:
    return dapi.OpenTicketRequest(
        allow_unknown_customer=True,  # no timeline in these tests
        request_id=request_id,
        customer_id=customer_id,
        channel=ev.TICKET_CHANNEL_PHONE,
        subject=subject,
        category="delivery",
    )


async def open_ticket(desk: ServiceDeskServicer, customer_id: str, subject: str = "x") -> str:
    return str((await desk.OpenTicket(opening(customer_id, subject), CALL)).result.aggregate_id)


async def test_ticket_commands_are_idempotent_and_conflicts_are_aborted(
    desk: ServiceDeskServicer,
) -> None:
    customer = str(uuid4())
    request = opening(customer, request_id="open-1")
    replies = await asyncio.gather(*(desk.OpenTicket(request, CALL) for _ in range(4)))
    assert len({r.result.aggregate_id for r in replies}) == 1
    assert sum(not r.result.replayed for r in replies) == 1
    tid = replies[0].result.aggregate_id
    note = dapi.RecordInteractionRequest(
        request_id="note-1", ticket_id=tid, kind=ev.INTERACTION_KIND_INTERNAL_NOTE, body="Hi"
    )
    first = await desk.RecordInteraction(note, CALL)
    retry = await desk.RecordInteraction(note, CALL)
    assert (retry.interaction_id, retry.result.replayed) == (first.interaction_id, True)
    assert retry.result.consistency_token == first.result.consistency_token
    assert desk.app.event_recorder.count_events() == 3  # opened, its SLA policy applied, the note
    assert await bad_fields(
        desk.OpenTicket(opening(customer, "Other", request_id="open-1"), CALL)
    ) == ["request_id"]
    stale = dapi.EscalateTicketRequest(ticket_id=tid, expected_version=1, reason="angry")
    await refused(desk.EscalateTicket(stale, CALL), VersionConflict)
    assert await bad_fields(
        desk.OpenTicket(
            dapi.OpenTicketRequest(allow_unknown_customer=True, customer_id="nobody", subject=" "),
            CALL,
        )
    ) == ["channel", "customer_id", "subject"]
    assert desk.app.event_recorder.count_events() == 3


async def test_bad_input_is_refused_before_the_state_is_looked_at(
    desk: ServiceDeskServicer,
) -> None:
    tid = await open_ticket(desk, str(uuid4()))
    assert await bad_fields(
        desk.OpenTicket(
            dapi.OpenTicketRequest(
                allow_unknown_customer=True,
                customer_id="42",
                channel=ev.TICKET_CHANNEL_SMS,
                subject=" ",
            ),
            CALL,
        )
    ) == ["customer_id", "subject"]
    call = dapi.RecordInteractionRequest(
        ticket_id=tid, kind=ev.INTERACTION_KIND_INBOUND_CALL, duration_seconds=10**6
    )
    assert await bad_fields(desk.RecordInteraction(call, CALL)) == ["duration_seconds"]
    assert await bad_fields(desk.RateTicket(dapi.RateTicketRequest(ticket_id=tid), CALL)) == [
        "score"
    ]
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=tid), CALL)
    assert await bad_fields(
        desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution=" "), CALL)
    ) == ["resolution"]
    refusal = await refused(
        desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="x"), CALL),
        PreconditionFailed,
    )
    assert f"ticket {tid} is closed: cannot resolve it" in str(refusal)
    assert desk.app.event_recorder.count_events() == 4  # opened, SLA applied, SLA cancelled, closed


async def test_resolution_and_calls_are_recorded_at_the_clock_of_the_application(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk, str(uuid4()))
    called = clock.advance(minutes=5)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=ev.INTERACTION_KIND_INBOUND_CALL, duration_seconds=240
        ),
        CALL,
    )
    resolved = clock.advance(minutes=10)
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Fixed"), CALL)
    ticket = desk.app.get_ticket(UUID(tid))
    assert ticket.interactions[0]["recorded_at"] == called
    assert ticket.interactions[0]["channel"] == "phone"
    assert ticket.resolved_at == resolved


async def test_the_service_a_ticket_is_about_is_a_word_as_a_contract_names_it(
    desk: ServiceDeskServicer,
) -> None:
    """OpenTicket took any text as its service ("Router Care!", 500 characters): one that no
    contract's services (words) could ever match, so the ticket went without its
    entitlement, unexplained."""
    for service in ["Router Care!", "x" * 65]:
        request = opening(str(uuid4()))
        request.service = service
        assert await bad_fields(desk.OpenTicket(request, CALL)) == ["service"]
    assert desk.app.event_recorder.count_events() == 0
    request = opening(str(uuid4()))
    request.service = " Router-Care "
    await desk.OpenTicket(request, CALL)


class SlowTimeline(ContextReader):
    """A timeline that does not know the customer: it looks for them as long as it is let."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")

    async def known_profile(self, customer_id: str, grace: float = 2.0) -> Any:
        await asyncio.sleep(grace)
        return None


class Within(CallContext):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def time_remaining(self) -> float | None:
        return self.seconds


async def test_an_unknown_customer_is_not_found_within_the_callers_deadline(clock: Clock) -> None:
    """The timeline was asked for an unknown customer for 2 s whatever the deadline: a caller
    with a 1 s deadline got DEADLINE_EXCEEDED instead of NOT_FOUND."""
    desk = ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), SlowTimeline())
    request = opening(str(uuid4()))
    request.allow_unknown_customer = False
    within: Any = Within(1.0)
    answer = asyncio.wait_for(desk.OpenTicket(request, within), 0.95)
    assert "is not known to the timeline" in str(await refused(answer, NotFound))
    assert desk.app.event_recorder.count_events() == 0


async def test_an_unknown_channel_or_priority_number_is_refused_and_none_is_normal(
    desk: ServiceDeskServicer,
) -> None:
    customer = str(uuid4())
    for channel, priority, subject, fields in [
        (ev.TICKET_CHANNEL_PHONE, 999, "x", ["priority"]),
        (ev.TICKET_CHANNEL_PHONE, -1, "x", ["priority"]),
        (999, ev.TICKET_PRIORITY_HIGH, " ", ["channel", "subject"]),
    ]:
        request = opening(customer, subject)
        request.channel = cast(Any, channel)
        request.priority = cast(Any, priority)
        assert await bad_fields(desk.OpenTicket(request, CALL)) == fields
    assert desk.app.event_recorder.count_events() == 0
    # Unspecified is as before: a NORMAL ticket.
    tid = UUID(await open_ticket(desk, customer))
    assert desk.app.get_ticket(tid).priority == "normal"


async def test_tickets_are_listed_newest_first_by_customer_state_agent_queue_priority(
    desk: ServiceDeskServicer,
) -> None:
    a, b = str(uuid4()), str(uuid4())
    ids = [await open_ticket(desk, c, f"Ticket {i}") for i, c in enumerate([a, a, b, a, b])]
    await desk.AssignTicket(dapi.AssignTicketRequest(ticket_id=ids[1], agent_id="emp-1"), CALL)
    await desk.AssignTicket(dapi.AssignTicketRequest(ticket_id=ids[2], queue="Billing"), CALL)
    await desk.ChangePriority(
        dapi.ChangePriorityRequest(ticket_id=ids[3], priority=ev.TICKET_PRIORITY_URGENT), CALL
    )
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=ids[4]), CALL)

    async def listed(**kw: Any) -> list[str]:
        reply = await desk.ListTickets(dapi.ListTicketsRequest(**kw), CALL)
        return [t.ticket_id for t in reply.tickets]

    assert await listed(customer_id=a) == [ids[3], ids[1], ids[0]]
    assert await listed(state=ev.TICKET_STATE_CLOSED) == [ids[4]]
    assert await listed(agent_id="emp-1") == [ids[1]]
    assert await listed(queue="billing") == [ids[2]]
    assert await listed(priority=ev.TICKET_PRIORITY_URGENT, customer_id=a) == [ids[3]]
    pages, token = [], ""
    while True:
        page = await desk.ListTickets(dapi.ListTicketsRequest(page_size=2, page_token=token), CALL)
        pages.append([t.ticket_id for t in page.tickets])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]
    # A page's token continues its own list only (it went on with another's silently).
    first = await desk.ListTickets(dapi.ListTicketsRequest(page_size=2), CALL)
    other = dapi.ListTicketsRequest(page_size=2, page_token=first.next_page_token, queue="billing")
    assert await bad_fields(desk.ListTickets(other, CALL)) == ["page_token"]
    assert await bad_fields(
        desk.ListTickets(dapi.ListTicketsRequest(page_token="nonsense"), CALL)
    ) == ["page_token"]
    assert await bad_fields(desk.ListTickets(dapi.ListTicketsRequest(page_size=201), CALL)) == [
        "page_size"
    ]


async def test_open_tickets_are_listed_on_hold_or_not(desk: ServiceDeskServicer) -> None:
    customer = str(uuid4())
    ids = [await open_ticket(desk, customer, f"Ticket {i}") for i in range(4)]
    waits = [ev.TICKET_WAITING_FOR_CUSTOMER, ev.TICKET_WAITING_FOR_THIRD_PARTY]
    for tid, whom in zip(ids[:2], waits, strict=True):
        await desk.HoldTicket(dapi.HoldTicketRequest(ticket_id=tid, waiting_for=whom), CALL)
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=ids[3]), CALL)

    async def listed(**kw: Any) -> list[tuple[str, int]]:
        reply = await desk.ListTickets(dapi.ListTicketsRequest(**kw), CALL)
        return [(t.ticket_id, t.waiting_for) for t in reply.tickets]

    assert await listed(on_hold=True) == [(ids[1], waits[1]), (ids[0], waits[0])]
    assert await listed(on_hold=False) == [(ids[2], 0)]  # open, not the closed one
    assert len(await listed()) == 4
    assert await listed(on_hold=True, state=ev.TICKET_STATE_OPEN) == await listed(on_hold=True)
    error = await refused(
        desk.ListTickets(dapi.ListTicketsRequest(on_hold=True, state=ev.TICKET_STATE_CLOSED), CALL),
        InvalidArgument,
    )
    assert str(error) == "on_hold: only open tickets are on hold or not; state is closed"
    await desk.ResumeTicket(dapi.ResumeTicketRequest(ticket_id=ids[0]), CALL)
    assert await listed(on_hold=True) == [(ids[1], waits[1])]


class _Expired(CallContext):
    """A call whose deadline passed while it waited (for a worker thread, say)."""

    def time_remaining(self) -> float | None:
        return 0.0


EXPIRED: Any = _Expired()


async def test_a_command_whose_deadline_has_passed_is_not_executed(
    desk: ServiceDeskServicer,
) -> None:
    error = await refused(desk.OpenTicket(opening(str(uuid4())), EXPIRED), DeadlineExceeded)
    assert "deadline" in str(error)
    assert desk.app.head() == 0
    # The same command in time is executed.
    await desk.OpenTicket(opening(str(uuid4())), CALL)
    assert desk.app.head() == 2  # the ticket and its SLA policy


async def test_a_duplicate_ticket_merges_into_the_open_one_and_a_wrong_merge_changes_nothing(
    desk: ServiceDeskServicer,
) -> None:
    """The customer wrote and then called about one parcel: the call's ticket is merged into
    the first, closed as its duplicate with its clocks cancelled, and the first lists it."""
    customer, other = str(uuid4()), str(uuid4())
    first = await open_ticket(desk, customer, "Parcel lost")
    again = await open_ticket(desk, customer, "Where is my parcel?")
    elsewhere = await open_ticket(desk, other, "Parcel lost")
    merge = dapi.MergeTicketsRequest(
        request_id="merge-1",
        survivor_ticket_id=first,
        duplicate_ticket_id=again,
        reason="the same parcel",
    )
    before = desk.app.head()
    # Wrong merges: refused, nothing stored.
    assert await bad_fields(
        desk.MergeTickets(
            dapi.MergeTicketsRequest(survivor_ticket_id=first, duplicate_ticket_id=first), CALL
        )
    ) == ["duplicate_ticket_id"]
    mixed = dapi.MergeTicketsRequest(survivor_ticket_id=first, duplicate_ticket_id=elsewhere)
    wrong = await refused(desk.MergeTickets(mixed, CALL), PreconditionFailed)
    assert "only one customer's tickets merge" in str(wrong)
    assert desk.app.head() == before
    reply = await desk.MergeTickets(merge, CALL)
    assert (await desk.MergeTickets(merge, CALL)).result.replayed
    assert reply.result.aggregate_id == first
    survivor = desk.app.load(Ticket, UUID(first))
    duplicate = desk.app.load(Ticket, UUID(again))
    assert (survivor.state, survivor.merged_tickets) == ("open", (again,))
    assert (duplicate.state, duplicate.merged_into) == ("closed", first)
    # The duplicate's clocks are cancelled; the survivor's run on.
    assert {t["status"] for t in duplicate.sla_targets.values()} == {"cancelled"}
    assert {t["status"] for t in survivor.sla_targets.values()} == {"in_progress"}
    # The duplicate is closed now: it merges nowhere again, and nothing merges into it.
    again_merge = dapi.MergeTicketsRequest(survivor_ticket_id=first, duplicate_ticket_id=again)
    closed = await refused(desk.MergeTickets(again_merge, CALL), PreconditionFailed)
    assert "is closed" in str(closed)
    into_closed = dapi.MergeTicketsRequest(survivor_ticket_id=again, duplicate_ticket_id=first)
    assert "is closed" in str(await refused(desk.MergeTickets(into_closed, CALL)))
    published = [CONTRACT.publication(e).payload for e in desk.app.events.get(UUID(again))]
    assert isinstance(published[-1], ev.TicketMergedInto)
    assert published[-1].survivor_ticket_id == first
