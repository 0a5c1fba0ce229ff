"""Service contracts with expiry, through the service desk's servicer in memory, and their
entries in the timeline and profile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from c360.events.v1 import contact_events_pb2 as cev
from c360.events.v1 import service_contract_events_pb2 as sev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.envelope import Publication, pack
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT
from c360_service_desk.service_contracts import ServiceContract
from c360_timeline.projection import entry_for
from c360_timeline.query import profile_message

from .support import CALL, Clock, KnownCustomers, bad_fields, refused
from .test_service_desk_application import open_ticket
from .test_ticket_projection import replay

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def desk(clock: Clock) -> ServiceDeskServicer:
    return ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), KnownCustomers())


def kinds(desk: ServiceDeskServicer, contract_id: str) -> list[str]:
    return [type(e).__name__ for e in desk.app.repository.event_store.get(UUID(contract_id))]


async def test_a_contract_is_warned_before_its_end_and_expires_once(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    reply = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=str(uuid4()),
            name="Router care",
            services=["router-care", "broadband"],
            starts_on="2026-01-01",
            ends_on="2027-02-28",
        ),
        CALL,
    )
    cid = reply.result.aggregate_id
    assert desk.app.check_slas() == 0
    clock.now = datetime(2027, 1, 29, 0, 0, tzinfo=UTC)  # 30 days before the end
    assert desk.app.check_slas() == 2  # the warning, and the renewal due (for sales)
    assert desk.app.check_slas() == 0
    clock.now = datetime(2027, 2, 28, 23, 59, tzinfo=UTC)  # the last day: still valid
    assert desk.app.check_slas() == 0
    clock.now = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)
    assert desk.app.check_slas() == 1
    clock.now += timedelta(days=400)
    assert desk.app.check_slas() == 0
    assert kinds(desk, cid) == [
        "Signed",
        "ExpiryNear",
        "RenewalDue",
        "Expired",
    ]
    events = list(desk.app.repository.event_store.get(UUID(cid)))
    near = CONTRACT.publication(events[1]).payload
    assert isinstance(near, sev.ServiceContractExpiryNear)
    assert (near.days_left, near.ends_on) == (30, "2027-02-28")
    assert desk.app.get_contract(UUID(cid)).expired
    # Contracts are not tickets.
    listed = await desk.ListTickets(dapi.ListTicketsRequest(), CALL)
    assert list(listed.tickets) == []


async def test_a_contract_past_its_end_expires_without_a_warning(
    desk: ServiceDeskServicer,
) -> None:
    reply = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=str(uuid4()), name="Old", starts_on="2025-01-01", ends_on="2025-12-31"
        ),
        CALL,
    )
    assert desk.app.check_slas() == 1
    assert kinds(desk, reply.result.aggregate_id)[1:] == ["Expired"]


async def test_contract_days_are_bounded_so_renewals_and_warnings_stay_days(
    desk: ServiceDeskServicer,
) -> None:
    def creating(starts_on: str, ends_on: str) -> dapi.CreateServiceContractRequest:
        return dapi.CreateServiceContractRequest(
            customer_id=str(uuid4()), name="Care", starts_on=starts_on, ends_on=ends_on
        )

    def renewing(contract_id: str, ends_on: str) -> dapi.RenewServiceContractRequest:
        return dapi.RenewServiceContractRequest(contract_id=contract_id, ends_on=ends_on)

    says = "must be a date in the years 1900 to 2999"
    error = await refused(desk.CreateServiceContract(creating("0001-01-01", "9999-12-31"), CALL))
    assert isinstance(error, InvalidArgument)
    assert [(v.field, v.description) for v in error.violations] == [
        ("starts_on", says),
        ("ends_on", says),
    ]
    reply = await desk.CreateServiceContract(creating("2026-01-01", "2026-12-31"), CALL)
    cid = reply.result.aggregate_id
    assert await bad_fields(desk.RenewServiceContract(renewing(cid, "9999-12-31"), CALL)) == [
        "ends_on"
    ]
    await desk.RenewServiceContract(renewing(cid, "2999-12-31"), CALL)
    # The last day there is: renewing it again is a precondition, not an overflow.
    again = await refused(desk.RenewServiceContract(renewing(cid, "2999-12-31"), CALL))
    assert isinstance(again, PreconditionFailed)
    assert "runs until 2999-12-31: a renewal must end after it" in str(again)
    assert desk.app.check_slas() == 0
    shown = await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=cid), CALL)
    assert (shown.contract.period, shown.contract.ends_on) == (1, "2999-12-31")
    # A contract stored before the bound, ending on the calendar's last day, is refused too.
    legacy = ServiceContract(
        customer_id=str(uuid4()),
        name="Legacy",
        services=[],
        starts_on="2026-01-01",
        ends_on="9999-12-31",
        warning_days=30,
    )
    with pytest.raises(PreconditionFailed):
        legacy.renew("2028-01-01")


async def test_a_contract_or_a_contact_for_a_customer_nobody_knows_is_not_found(
    clock: Clock,
) -> None:
    known = KnownCustomers(str(uuid4()))
    desk = ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), known)
    ticket = await open_ticket(desk, str(uuid4()))  # for someone not registered yet

    def contract(customer_id: str) -> dapi.CreateServiceContractRequest:
        return dapi.CreateServiceContractRequest(
            customer_id=customer_id, name="Care", starts_on="2026-01-01", ends_on="2026-12-31"
        )

    def contact(customer_id: str) -> dapi.RecordContactRequest:
        return dapi.RecordContactRequest(
            customer_id=customer_id,
            channel=tev.TICKET_CHANNEL_PHONE,
            direction=cev.CONTACT_DIRECTION_INBOUND,
            outcome=cev.CONTACT_OUTCOME_RESOLVED,
        )

    stored = desk.app.head()
    for nobody in (str(uuid4()), ticket):
        error = await refused(desk.CreateServiceContract(contract(nobody), CALL), NotFound)
        assert f"customer {nobody} is not known to the timeline" in str(error)
        await refused(desk.RecordContact(contact(nobody), CALL), NotFound)
    assert desk.app.head() == stored
    customer = known.know(str(uuid4()))
    await desk.CreateServiceContract(contract(customer), CALL)
    await desk.RecordContact(contact(customer), CALL)
    assert desk.app.head() == stored + 2


async def test_bad_contracts_name_every_field(desk: ServiceDeskServicer) -> None:
    assert await bad_fields(
        desk.CreateServiceContract(
            dapi.CreateServiceContractRequest(
                customer_id="x",
                name=" ",
                starts_on="2027-01-01",
                ends_on="2026-01-01",
                warning_days=400,
            ),
            CALL,
        )
    ) == ["customer_id", "ends_on", "name", "warning_days"]
    assert await bad_fields(
        desk.CreateServiceContract(
            dapi.CreateServiceContractRequest(
                customer_id=str(uuid4()), name="x", starts_on="soon", ends_on="2026-13-01"
            ),
            CALL,
        )
    ) == ["ends_on", "starts_on"]
    for value in ("1e3", "NaN", "Infinity", "12,50"):  # a person's decimal, no exponent
        assert await bad_fields(
            desk.CreateServiceContract(
                dapi.CreateServiceContractRequest(
                    customer_id=str(uuid4()),
                    name="x",
                    starts_on="2026-01-01",
                    ends_on="2026-12-31",
                    value_amount=value,
                    value_currency="EUR",
                ),
                CALL,
            )
        ) == ["value.amount"], value
    assert desk.app.head() == 0
    missing = await refused(
        desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=str(uuid4())), CALL),
        NotFound,
    )
    assert " ".join(str(missing).split()[:2]) == "service contract"  # not "servicecontract"


def test_contracts_show_on_the_timeline_and_in_the_profile() -> None:
    customer, contract_id = str(uuid4()), uuid.uuid4()
    payloads = [
        sev.ServiceContractCreated(
            customer_id=customer, name="Router care", starts_on="2026-01-01", ends_on="2027-02-28"
        ),
        sev.ServiceContractExpiryNear(
            customer_id=customer, name="Router care", ends_on="2027-02-28", days_left=30
        ),
    ]
    entries = [
        entry_for(
            pack(
                source="service-desk",
                publication=Publication("service_contract", customer, payload),
                aggregate_id=contract_id,
                aggregate_version=n + 1,
                position=n + 1,
                occurred_at=NOW + timedelta(days=n),
            )
        )
        for n, payload in enumerate(payloads)
    ]
    assert [e.type for e in entries] == [
        "service_contract.created",
        "service_contract.expiry_near",
    ]
    assert entries[1].summary == (
        "Service contract “Router care” ends in 30 days (2027-02-28): time to renew"
    )
    profile, _ = replay(entries)
    shown = profile_message(profile, now=NOW + timedelta(days=2)).service_desk
    assert [(c.name, c.ends_on, c.state) for c in shown.service_contracts] == [
        ("Router care", "2027-02-28", "expiring")
    ]


def test_the_profile_shows_what_is_left_of_a_contracts_allowance() -> None:
    customer, contract_id = str(uuid4()), uuid.uuid4()
    cases = sev.ALLOWANCE_UNIT_CASES

    def used(remaining: int, period: int) -> sev.ServiceContractConsumed:
        return sev.ServiceContractConsumed(
            customer_id=customer, unit=cases, amount=1, remaining=remaining, period=period
        )

    payloads = [
        sev.ServiceContractCreated(
            customer_id=customer, name="Router care", starts_on="2026-01-01", ends_on="2026-12-31"
        ),
        sev.ServiceContractTermsSet(customer_id=customer, allowance_unit=cases, allowance=2),
        used(1, 1),
        sev.ServiceContractRenewed(
            customer_id=customer,
            name="Router care",
            starts_on="2027-01-01",
            ends_on="2027-12-31",
            period=2,
        ),
        used(1, 2),
        used(0, 1),  # a ticket of the first period resolved late: not this period's
    ]
    entries = [
        entry_for(
            pack(
                source="service-desk",
                publication=Publication("service_contract", customer, payload),
                aggregate_id=contract_id,
                aggregate_version=n + 1,
                position=n + 1,
                occurred_at=NOW + timedelta(days=n),
            )
        )
        for n, payload in enumerate(payloads)
    ]
    profile, _ = replay(entries[:3])
    [shown] = profile_message(profile, now=NOW).service_desk.service_contracts
    assert (shown.allowance_unit, shown.allowance, shown.remaining, shown.period) == (
        "cases",
        2,
        1,
        1,
    )
    profile, _ = replay(entries)
    [shown] = profile_message(profile, now=NOW).service_desk.service_contracts
    assert (shown.starts_on, shown.remaining, shown.period) == ("2027-01-01", 1, 2)
    unlimited, _ = replay(entries[:1])
    [shown] = profile_message(unlimited, now=NOW).service_desk.service_contracts
    assert (shown.allowance_unit, shown.HasField("remaining")) == ("unlimited", False)
    # Before its first day the contract is upcoming; a renewal's later start is not.
    before = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert [
        c.state for c in profile_message(unlimited, now=before).service_desk.service_contracts
    ] == ["upcoming"]
    assert [c.state for c in profile_message(profile, now=NOW).service_desk.service_contracts] == [
        "active"
    ]
