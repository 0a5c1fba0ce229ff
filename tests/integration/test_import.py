"""Bulk import over the client-streaming RPC: batches, bad rows, idempotency by external key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_customer.domain import id_for_external_key

from .conftest import Stack

pytestmark = pytest.mark.integration


def rows(count: int) -> list[capi.ImportRow]:
    out = []
    for i in range(count):
        row = capi.ImportRow(
            row=i + 2,
            external_key=f"crm-{i}",
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name=f"Imported Person {i}",
            emails=[f"imported{i}@example.com"],
        )
        if i % 100 == 7:
            row.emails[:] = ["broken@"]
        if i % 100 == 9:
            row.kind = ev.CUSTOMER_KIND_UNSPECIFIED
        out.append(row)
    return out


async def stream(items: list[capi.ImportRow]) -> AsyncIterator[capi.ImportCustomersRequest]:
    """The rows in messages of 70, so that messages and the service's batches do not line up."""
    for start in range(0, len(items), 70):
        yield capi.ImportCustomersRequest(rows=items[start : start + 70])


async def test_importing_the_same_rows_twice_creates_nothing_new(stack: Stack) -> None:
    batch = rows(600)
    first = await stack.customer.ImportCustomers(stream(batch))
    assert first.created == 588
    assert first.unchanged == 0
    assert [(r.row, r.reason) for r in first.rejected][:2] == [
        (9, "emails[0]: not a valid address"),
        (11, "kind: must be one of person, organisation"),
    ]
    assert len(first.rejected) == 12
    assert stack.customer_app.event_recorder.count_events() == 588

    again = await stack.customer.ImportCustomers(stream(batch))
    assert (again.created, again.unchanged, len(again.rejected)) == (0, 588, 12)
    assert stack.customer_app.event_recorder.count_events() == 588

    customer_id = str(id_for_external_key("crm-0", stack.customer_app.import_key))
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, wait_for=first.consistency_token),
        timeout=20,
    )
    assert [e.type for e in timeline.entries] == ["customer.registered"]
