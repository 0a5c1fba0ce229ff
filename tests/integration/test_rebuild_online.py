"""A rebuild fills a new read model beside the live one and switches to it at once: reads
answer all along, and never from an empty or half-filled timeline."""

from __future__ import annotations

import asyncio

import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from tests.integration.conftest import Stack
from tests.integration.helpers import register

pytestmark = pytest.mark.integration


async def test_reads_during_a_rebuild_never_fail_nor_show_an_empty_timeline(stack: Stack) -> None:
    registered = await register(stack.customer, "Rebuilt", "rebuilt@example.com")
    customer_id = registered.result.aggregate_id
    for i in range(30):  # a history worth replaying
        reply = await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=customer_id, display_name=f"Rebuilt {i}")
        )
    request = tapi.GetTimelineRequest(customer_id=customer_id, page_size=500)
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, wait_for=reply.result.consistency_token),
        timeout=20,
    )
    complete = len((await stack.timeline.GetTimeline(request)).entries)
    assert complete == 31

    rebuilding = asyncio.Event()
    sizes: list[int] = []

    async def read_all_along() -> None:
        await rebuilding.wait()
        while rebuilding.is_set():
            page = await stack.timeline.GetTimeline(request, timeout=10)  # never fails
            sizes.append(len(page.entries))

    reader = asyncio.create_task(read_all_along())
    progress = []
    rebuilding.set()
    try:
        async for reply_ in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest()):
            progress.append((reply_.applied, reply_.done))
    finally:
        rebuilding.clear()
        await reader
    assert progress[-1] == (31, True)
    assert sizes  # reads happened while it rebuilt
    assert set(sizes) == {complete}  # every read saw the whole timeline, never less
    after = await stack.timeline.GetTimeline(request)
    assert len(after.entries) == complete
