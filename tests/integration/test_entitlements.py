"""Service contracts as entitlements, and their renewal sold by the sales service: through
gRPC, the stores, NATS (sales follows the desk's published events) and the timeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import envelope_pb2
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.events.v1 import service_contract_events_pb2 as sev
from c360.events.v1 import ticket_events_pb2 as ev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sapi_grpc
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.envelope import unpack
from c360_sales.renewals import ContractRenewals

from .conftest import Stack
from .helpers import eventually, register

STAGES = [
    pev.PipelineStage(key="qualification", name="Qualification", probability=10),
    pev.PipelineStage(key="won", name="Won", won=True),
    pev.PipelineStage(key="lost", name="Lost", lost=True),
]


async def test_a_contract_entitles_tickets_until_its_allowance_is_used_and_is_renewed(
    stack: Stack,
) -> None:
    desk = stack.service_desk
    sales = stack.stub("sales", sapi_grpc.SalesServiceStub)
    await sales.DefinePipeline(sapi.DefinePipelineRequest(name="default", stages=STAGES))
    cid = (await register(stack.customer, "Lena Vogel", "lena@example.de")).result.aggregate_id
    await stack.customer.AssignOwner(capi.AssignOwnerRequest(customer_id=cid, owner_id="emp-0042"))
    today = datetime.now(UTC).date()
    ends = today + timedelta(days=20)  # inside the 30 days that warn
    made = await desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=cid,
            name="Router care",
            services=["broadband"],
            starts_on=(today - timedelta(days=300)).isoformat(),
            ends_on=ends.isoformat(),
            allowance_unit=sev.ALLOWANCE_UNIT_CASES,
            allowance=2,
            sla_policy="premium",
            value_amount="1200",
            value_currency="EUR",
        )
    )
    contract_id = made.result.aggregate_id

    async def open_ticket(service: str = "broadband") -> dapi.Ticket:
        opened = await desk.OpenTicket(
            dapi.OpenTicketRequest(
                customer_id=cid,
                channel=ev.TICKET_CHANNEL_PHONE,
                subject="No internet",
                priority=ev.TICKET_PRIORITY_LOW,
                service=service,
            )
        )
        got = await desk.GetTicket(dapi.GetTicketRequest(ticket_id=opened.result.aggregate_id))
        return got.ticket

    first = await open_ticket()
    assert first.entitlement.contract_id == contract_id
    assert first.entitlement.consumed
    assert first.sla_policy == "premium"  # granted by the contract, not the priority's "low"
    uncovered = await open_ticket("mobile")
    assert not uncovered.HasField("entitlement")
    assert "does not cover mobile" in uncovered.entitlement_note
    assert uncovered.sla_policy == "low"
    await open_ticket()
    third = await open_ticket()
    assert not third.HasField("entitlement")
    assert "allowance of this period is used up" in third.entitlement_note
    contract = (
        await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=contract_id))
    ).contract
    assert (contract.used, contract.remaining) == (2, 0)

    # The scheduler writes the expiry warning and the renewal due; sales opens the renewal
    # opportunity for the customer's owner.
    await asyncio.to_thread(stack.desk_app.check_slas)

    async def renewals() -> list[sapi.Opportunity]:
        found = await sales.ListOpportunities(sapi.ListOpportunitiesRequest(customer_id=cid))
        return [o for o in found.opportunities if o.name.startswith("Renewal: Router care")]

    async def one_renewal() -> bool:
        return len(await renewals()) == 1

    await eventually(one_renewal, timeout=30, what="the renewal opportunity")
    (renewal,) = await renewals()
    assert renewal.owner_id == "emp-0042"
    assert (renewal.amount.amount, renewal.amount.currency) == ("1200.00", "EUR")
    assert renewal.expected_close == ends.isoformat()

    # The same event again (a redelivery, a replay, a second replica): nothing more.
    follower = stack.hosts["sales"].part("renewals", ContractRenewals)
    published = await _renewal_due(stack, contract_id)
    assert await follower.open(*published)
    await asyncio.sleep(0.5)
    assert len(await renewals()) == 1

    renewed = await desk.RenewServiceContract(
        dapi.RenewServiceContractRequest(
            contract_id=contract_id, ends_on=(ends + timedelta(days=365)).isoformat()
        )
    )

    async def contract_now() -> dapi.ServiceContract:
        got = await desk.GetServiceContract(dapi.GetServiceContractRequest(contract_id=contract_id))
        return got.contract

    # Until the current period ends its allowance stays used up; the next one has it again.
    contract = await contract_now()
    assert (contract.period, contract.remaining, contract.state) == (1, 0, "active")
    assert contract.ends_on == (ends + timedelta(days=365)).isoformat()
    assert contract.period_ends_on == ends.isoformat()
    assert not (await open_ticket()).HasField("entitlement")
    app = stack.desk_app
    real_clock = app.clock
    app.clock = lambda: real_clock() + timedelta(days=22)
    try:
        assert (await open_ticket()).entitlement.contract_id == contract_id
        contract = await contract_now()
        assert (contract.period, contract.remaining) == (2, 1)
        assert contract.starts_on == (ends + timedelta(days=1)).isoformat()
        assert contract.period_ends_on == contract.ends_on
    finally:
        app.clock = real_clock
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=cid, sources=["service-desk"], wait_for=renewed.result.consistency_token
        ),
        timeout=10,
    )
    summaries = [e.summary for e in timeline.entries]
    assert any(s.startswith("Service contract “Router care” renewed") for s in summaries)
    renewal_due = "Renewal of service contract “Router care” handed to sales (worth 1200.00 EUR)"
    assert renewal_due in summaries
    assert "Served under service contract “Router care” (SLA policy premium)" in summaries


async def _renewal_due(
    stack: Stack, contract_id: str
) -> tuple[envelope_pb2.Envelope, sev.ServiceContractRenewalDue]:
    """The contract's RenewalDue as published (from the desk's catch-up read of its store)."""
    from c360_service_desk.contract import CONTRACT

    app = stack.desk_app
    for event in app.repository.event_store.get(__import__("uuid").UUID(contract_id)):
        if type(event).__name__ == "RenewalDue":
            publication = CONTRACT.publication(event)
            envelope = envelope_pb2.Envelope(
                event_id=f"service-desk:{contract_id}:{event.originator_version}",
                source="service-desk",
                customer_id=publication.customer_id,
                aggregate_id=contract_id,
                aggregate_type="service_contract",
                aggregate_version=event.originator_version,
            )
            envelope.payload.Pack(publication.payload)
            payload = unpack(envelope)
            assert isinstance(payload, sev.ServiceContractRenewalDue)
            return envelope, payload
    raise AssertionError("no RenewalDue event")
