"""Service contracts as entitlements, in memory: allowance of cases or hours, consumption on
opening or on resolution, the contract's SLA policy and the customer-class condition,
renewal periods; and the policies' conditions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c360.events.v1 import service_contract_events_pb2 as sev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.errors import PreconditionFailed
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.service_contracts import create_contract
from c360_service_desk.sla import policy_for

from .support import CALL, Clock, KnownCustomers, bad_fields

TODAY = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(TODAY)


@pytest.fixture
def desk(clock: Clock) -> ServiceDeskServicer:
    return ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), KnownCustomers())


async def contract(desk: ServiceDeskServicer, customer: str, **terms: object) -> str:
    made = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=customer,
            name="Care",
            starts_on="2026-01-01",
            ends_on="2026-12-31",
            **terms,  # type: ignore[arg-type]
        ),
        CALL,
    )
    return made.result.aggregate_id


async def ticket(desk: ServiceDeskServicer, customer: str, **more: object) -> dapi.Ticket:
    opened = await desk.OpenTicket(
        dapi.OpenTicketRequest(
            customer_id=customer,
            channel=tev.TICKET_CHANNEL_EMAIL,
            subject="Help",
            allow_unknown_customer=True,
            **more,  # type: ignore[arg-type]
        ),
        CALL,
    )
    got = await desk.GetTicket(dapi.GetTicketRequest(ticket_id=opened.result.aggregate_id), CALL)
    return got.ticket


async def test_hours_are_consumed_on_resolution_from_the_work_recorded(
    desk: ServiceDeskServicer,
) -> None:
    customer = str(uuid4())
    cid = await contract(desk, customer, allowance_unit=sev.ALLOWANCE_UNIT_HOURS, allowance=1)
    t = await ticket(desk, customer)
    assert t.entitlement.consume_on == sev.CONSUME_ON_RESOLUTION
    assert not t.entitlement.consumed
    await desk.ResolveTicket(
        dapi.ResolveTicketRequest(ticket_id=t.ticket_id, resolution="done", work_minutes=45),
        CALL,
    )
    got = await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=cid), CALL)
    assert (got.contract.used, got.contract.remaining) == (45, 15)
    t2 = await ticket(desk, customer)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=t2.ticket_id, kind=tev.INTERACTION_KIND_OUTBOUND_CALL, duration_seconds=1210
        ),
        CALL,
    )
    await desk.ResolveTicket(
        dapi.ResolveTicketRequest(ticket_id=t2.ticket_id, resolution="x"), CALL
    )
    got = await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=cid), CALL)
    assert got.contract.remaining == 0  # 21 call minutes, rounded up, took the last 15 and more
    third = await ticket(desk, customer)
    assert not third.HasField("entitlement")
    assert "used up" in third.entitlement_note
    # Reopened and resolved again: consumed once.
    ticket_events = [
        type(e).__name__ for e in desk.app.repository.event_store.get(UUID(t.ticket_id))
    ]
    assert ticket_events.count("EntitlementConsumed") == 1


async def test_a_customer_without_a_contract_is_served_and_marked(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    t = await ticket(desk, str(uuid4()))
    assert not t.HasField("entitlement")
    assert t.entitlement_note == "no service contract when it opened"
    customer = str(uuid4())
    await contract(desk, customer)
    clock.now = datetime(2027, 1, 2, tzinfo=UTC)  # after its end
    late = await ticket(desk, customer)
    assert "is not valid on 2027-01-02" in late.entitlement_note
    assert late.sla_policy == "normal"


async def test_a_renewed_contract_shows_the_period_today_falls_in(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    customer = str(uuid4())
    cid = await contract(desk, customer, allowance_unit=sev.ALLOWANCE_UNIT_CASES, allowance=10)
    assert (await ticket(desk, customer)).entitlement.contract_id == cid
    await desk.RenewServiceContract(
        dapi.RenewServiceContractRequest(contract_id=cid, ends_on="2027-12-31"), CALL
    )

    async def shown() -> tuple[object, ...]:
        got = await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=cid), CALL)
        c = got.contract
        return (c.period, c.starts_on, c.period_ends_on, c.ends_on, c.used, c.remaining)

    # Until 2026-12-31 the first period runs, with the case it used; the renewal follows it
    # (it was shown as "period 1: 2026-01-01 to 2027-12-31").
    assert await shown() == (1, "2026-01-01", "2026-12-31", "2027-12-31", 1, 9)
    clock.now = datetime(2027, 1, 1, 8, 0, tzinfo=UTC)
    assert await shown() == (2, "2027-01-01", "2027-12-31", "2027-12-31", 0, 10)


async def test_a_contract_before_its_first_day_is_upcoming_and_entitles_nothing(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    customer = str(uuid4())
    made = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=customer, name="Next year", starts_on="2027-01-01", ends_on="2027-12-31"
        ),
        CALL,
    )
    request = dapi.GetServiceContractRequest(contract_id=made.result.aggregate_id)
    assert (await desk.GetServiceContract(request, CALL)).contract.state == "upcoming"
    assert not (await ticket(desk, customer)).HasField("entitlement")
    clock.now = datetime(2027, 1, 1, 8, 0, tzinfo=UTC)
    assert (await desk.GetServiceContract(request, CALL)).contract.state == "active"
    assert (await ticket(desk, customer)).entitlement.contract_name == "Next year"


async def test_contracts_refuse_bad_terms(desk: ServiceDeskServicer) -> None:
    customer = str(uuid4())
    assert await bad_fields(
        desk.CreateServiceContract(
            dapi.CreateServiceContractRequest(
                customer_id=customer,
                name="x",
                starts_on="2026-01-01",
                ends_on="2026-12-31",
                allowance_unit=sev.ALLOWANCE_UNIT_HOURS,
                allowance=0,
                consume_on=sev.CONSUME_ON_OPEN,
                sla_policy="gold",
                value_amount="lots",
                value_currency="euro",
            ),
            CALL,
        )
    ) == ["allowance", "consume_on", "sla_policy", "value.amount", "value.currency"]
    assert desk.app.head() == 0


def test_policies_follow_classes_and_grants() -> None:
    def name(priority: str, classes: tuple[str, ...] = (), granted: str = "") -> str:
        found = policy_for(priority, "email", classes, granted)
        return found.name if found else ""

    assert name("normal", ("key",)) == "key-account"
    assert name("normal", ("loyal",)) == "normal"
    assert name("high", ("key",)) == "high"
    assert name("low", (), "premium") == "premium"
    assert name("high", (), "premium") == "premium"  # as fast to resolve, faster to answer
    # A grant never slows a ticket down: urgent resolves within 2 h, premium within 4 h.
    assert name("urgent", (), "premium") == "urgent"
    # A granted-only policy never matches by itself.
    assert "premium" not in {name(p) for p in ("low", "normal", "high", "urgent")}


@given(
    uses=st.lists(st.sampled_from(["a", "b"]), max_size=12),
    allowance=st.integers(min_value=1, max_value=5),
)
def test_each_period_has_its_own_allowance(uses: list[str], allowance: int) -> None:
    c = create_contract(
        customer_id=str(uuid4()),
        name="x",
        services=[],
        starts_on="2026-01-01",
        ends_on="2026-06-30",
        allowance_unit="cases",
        allowance=allowance,
    )
    c.renew("2026-12-31")
    days = {"a": date(2026, 3, 1), "b": date(2026, 9, 1)}
    granted = {"a": 0, "b": 0}
    for period in uses:
        if not c.refusal(days[period], ""):
            c.consume(str(uuid4()), days[period])
            granted[period] += 1
    for period, day in days.items():
        assert granted[period] == min(uses.count(period), allowance)
        assert c.remaining(day) == allowance - granted[period]
    assert c.period_on(date(2026, 6, 30)) == 1
    assert c.period_on(date(2026, 7, 1)) == 2
    assert (c.period_start(1), c.period_end(1)) == ("2026-01-01", "2026-06-30")
    assert (c.period_start(2), c.period_end(2)) == ("2026-07-01", "2026-12-31")
    assert not c.valid_on(date(2027, 1, 1))


def test_a_renewal_must_end_after_the_current_end() -> None:
    c = create_contract(
        customer_id=str(uuid4()),
        name="x",
        services=[],
        starts_on="2026-01-01",
        ends_on="2026-06-30",
    )
    with pytest.raises(
        PreconditionFailed, match="runs until 2026-06-30: a renewal must end after it"
    ):
        c.renew("2026-06-30")


async def test_cases_consumed_on_resolution_are_not_promised_twice(
    desk: ServiceDeskServicer,
) -> None:
    customer = str(uuid4())
    await contract(
        desk,
        customer,
        allowance_unit=sev.ALLOWANCE_UNIT_CASES,
        allowance=1,
        consume_on=sev.CONSUME_ON_RESOLUTION,
    )
    first = await ticket(desk, customer)
    assert first.entitlement.contract_name == "Care"
    second = await ticket(desk, customer)  # the one case is the first ticket's
    assert not second.HasField("entitlement")
    assert "taken by 1 open ticket" in second.entitlement_note
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=first.ticket_id), CALL)
    third = await ticket(desk, customer)  # the first closed unresolved: the case is free
    assert third.entitlement.contract_name == "Care"
    await desk.ResolveTicket(
        dapi.ResolveTicketRequest(ticket_id=third.ticket_id, resolution="done"), CALL
    )
    fourth = await ticket(desk, customer)
    assert "used up" in fourth.entitlement_note
