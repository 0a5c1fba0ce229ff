"""Commands over gRPC on real PostgreSQL and NATS: idempotency, conflicts, validation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.events.v1 import customer_events_pb2 as ev
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import auth
from c360_platform.channels import aio_channel
from c360_platform.errors import VersionConflict
from c360_platform.store import CommandContext

from .conftest import Stack
from .helpers import bad_fields, register, registration

pytestmark = pytest.mark.integration


async def test_read_your_writes_with_the_consistency_token(stack: Stack) -> None:
    reply = await register(stack.customer, "Ada Lovelace", "ada@example.com")
    token = reply.result.consistency_token
    assert token.startswith("customer:")
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id, wait_for=token), timeout=10
    )
    assert [e.type for e in timeline.entries] == ["customer.registered"]
    assert timeline.entries[0].summary == "Registered person “Ada Lovelace” via web"
    renamed = await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(
            customer_id=reply.result.aggregate_id, display_name="Augusta Ada King"
        )
    )
    profile = await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=reply.result.aggregate_id, wait_for=renamed.result.consistency_token
        ),
        timeout=10,
    )
    assert profile.profile.display_name == "Augusta Ada King"
    assert profile.profile.emails == ["ada@example.com"]


async def test_a_repeated_request_id_has_one_effect(stack: Stack) -> None:
    request = registration("Grace Hopper", "grace@example.com", request_id="req-1")
    first, *retries = await asyncio.gather(
        *(stack.customer.RegisterCustomer(request) for _ in range(5))
    )
    replies = [first, *retries]
    assert {r.result.aggregate_id for r in replies} == {first.result.aggregate_id}
    assert {r.result.consistency_token for r in replies} == {first.result.consistency_token}
    assert sum(not r.result.replayed for r in replies) == 1
    assert stack.customer_app.event_recorder.count_events() == 1
    again = await stack.customer.RegisterCustomer(request)
    assert again.result.replayed
    assert again.result.aggregate_id == first.result.aggregate_id

    other = registration("Someone Else", "else@example.com", request_id="req-1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.customer.RegisterCustomer(other)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["request_id"]
    assert stack.customer_app.event_recorder.count_events() == 1


async def test_concurrent_writers_with_the_same_expected_version(stack: Stack) -> None:
    reply = await register(stack.customer, "Alan Turing", "alan@example.com")
    cid = reply.result.aggregate_id
    results = await asyncio.gather(
        *(
            stack.customer.AddEmail(
                capi.AddEmailRequest(
                    customer_id=cid, expected_version=1, email=f"alan{i}@example.com"
                )
            )
            for i in range(2)
        ),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 1
    assert errors[0].code() == grpc.StatusCode.ABORTED
    customer = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))).customer
    assert customer.version == 2
    assert len(customer.emails) == 2


async def test_concurrent_writers_never_lose_an_update(stack: Stack) -> None:
    """Two writers load the same version; the second save is refused, not applied over."""
    reply = await register(stack.customer, "Edsger Dijkstra", "edsger@example.com")
    cid = reply.result.aggregate_id
    both_loaded = threading.Barrier(2, timeout=10)
    original_load = stack.customer_app.load

    def load_then_wait(*args: Any, **kwargs: Any) -> Any:
        aggregate = original_load(*args, **kwargs)
        both_loaded.wait()
        return aggregate

    stack.customer_app.load = load_then_wait  # type: ignore[method-assign]
    from uuid import UUID

    def add(email: str) -> object:
        try:
            return stack.customer_app.add_email(CommandContext(), UUID(cid), None, email)
        except VersionConflict as conflict:
            return conflict

    outcomes = await asyncio.gather(
        asyncio.to_thread(add, "e1@example.com"), asyncio.to_thread(add, "e2@example.com")
    )
    stack.customer_app.load = original_load  # type: ignore[method-assign]
    assert sum(isinstance(o, VersionConflict) for o in outcomes) == 1
    customer = stack.customer_app.get_customer(UUID(cid))
    assert customer.version == 2
    assert len(customer.emails) == 2  # the registered one and exactly one of the two


async def test_bad_input_is_invalid_argument_with_the_fields_in_a_bad_request(
    stack: Stack,
) -> None:
    """The mapping to gRPC; the bad-input matrix itself is unit-tested in memory."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.customer.RegisterCustomer(
            capi.RegisterCustomerRequest(
                kind=ev.CUSTOMER_KIND_PERSON, display_name=" ", emails=["not-an-address"]
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(bad_fields(caught.value)) == ["display_name", "emails[0]"]
    assert "emails[0]: not a valid address" in (caught.value.details() or "")
    assert stack.customer_app.event_recorder.count_events() == 0


async def test_not_found_and_failed_precondition(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id="00000000-0000-0000-0000-000000000001")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    ada = await register(stack.customer, "Ada Lovelace", "ada@example.com")
    bob = await register(stack.customer, "Bob", "bob@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.customer.LinkContactPerson(
            capi.LinkContactPersonRequest(
                organisation_id=ada.result.aggregate_id,
                person_id=bob.result.aggregate_id,
                role="buyer",
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not an organisation" in (caught.value.details() or "")
    assert stack.customer_app.event_recorder.count_events() == 2


async def test_contact_person_history_reaches_both_timelines(stack: Stack) -> None:
    org = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(kind=ev.CUSTOMER_KIND_ORGANISATION, display_name="ACME GmbH")
    )
    ada = await register(stack.customer, "Ada Lovelace", "ada@example.com")
    link = await stack.customer.LinkContactPerson(
        capi.LinkContactPersonRequest(
            organisation_id=org.result.aggregate_id,
            person_id=ada.result.aggregate_id,
            role="buyer",
        )
    )
    ended = await stack.customer.EndContactPerson(
        capi.EndContactPersonRequest(organisation_id=org.result.aggregate_id, link_id=link.link_id)
    )
    customer = (
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id=ada.result.aggregate_id)
        )
    ).customer
    assert [(c.role, c.HasField("valid_until")) for c in customer.contact_persons] == [
        ("buyer", True)
    ]
    for cid in (org.result.aggregate_id, ada.result.aggregate_id):
        timeline = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=cid, wait_for=ended.result.consistency_token),
            timeout=10,
        )
        types = [e.type for e in timeline.entries]
        assert types[:2] == ["customer.contact_person_link_ended", "customer.contact_person_linked"]
        # Both timelines say who was linked to whom.
        who = f"Person {ada.result.aggregate_id[:8]} at organisation {org.result.aggregate_id[:8]}"
        assert [e.summary for e in timeline.entries[:2]] == [
            f"{who}: contact-person link ended",
            f"{who} linked as contact person: buyer",
        ]


async def test_consent_evidence_says_who_recorded_each_decision(stack: Stack) -> None:
    ada = await register(stack.customer, "Ada Lovelace", "ada@example.com")
    cid = ada.result.aggregate_id
    grant = capi.GrantConsentRequest(
        customer_id=cid,
        channel=ev.CONSENT_CHANNEL_EMAIL,
        purpose=ev.CONSENT_PURPOSE_MARKETING,
        source="web-form",
    )
    await stack.customer.GrantConsent(grant)
    agent = aio_channel(stack.deployment.addresses["customer"], stack.token(auth.Role.AGENT))
    try:
        revoked = await customer_grpc.CustomerServiceStub(agent).RevokeConsent(
            capi.RevokeConsentRequest(
                customer_id=cid,
                channel=ev.CONSENT_CHANNEL_EMAIL,
                purpose=ev.CONSENT_PURPOSE_MARKETING,
                source="phone call",
            )
        )
    finally:
        await agent.close(None)
    customer = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))).customer
    [latest] = customer.consents
    assert (latest.granted, latest.source, latest.recorded_by) == (
        False,
        "phone call",
        "test:agent",
    )
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, wait_for=revoked.result.consistency_token),
        timeout=10,
    )
    assert [e.summary for e in timeline.entries if e.type.startswith("customer.consent")] == [
        "Consent revoked for marketing by email (phone call, recorded by test:agent)",
        "Consent granted for marketing by email (web-form, recorded by test:operator)",
    ]
