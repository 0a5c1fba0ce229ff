"""The timeline's ListChangedProfiles: every profile once from cursor 0, then only those that
changed after the cursor, each once at its latest change, in pages that lose nobody."""

from __future__ import annotations

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi

from .conftest import Stack
from .helpers import bad_fields, register

pytestmark = pytest.mark.integration


async def changed(stack: Stack, after: int, limit: int = 0) -> tapi.ListChangedProfilesResponse:
    return await stack.timeline.ListChangedProfiles(
        tapi.ListChangedProfilesRequest(after_cursor=after, limit=limit)
    )


async def test_changed_profiles_from_a_cursor(stack: Stack) -> None:
    names = ["Ann", "Ben", "Cai"]
    ids = [(await register(stack.customer, n, f"{n.lower()}@example.com")).result for n in names]
    last = await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=ids[0].aggregate_id, display_name="Ann Two")
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=ids[0].aggregate_id, wait_for=last.result.consistency_token
        )
    )
    everyone = await changed(stack, 0)
    # Each customer once, at its latest change: Ann (renamed last) comes last.
    assert [p.profile.display_name for p in everyone.profiles] == ["Ben", "Cai", "Ann Two"]
    assert everyone.cursor == everyone.profiles[-1].cursor
    # Paging by one loses nobody.
    cursor, seen = 0, []
    while page := (await changed(stack, cursor, 1)).profiles:
        seen += [p.profile.customer_id for p in page]
        cursor = page[-1].cursor
    assert seen == [p.profile.customer_id for p in everyone.profiles]
    # Nothing new: nothing listed, the cursor stays.
    assert list((await changed(stack, everyone.cursor)).profiles) == []
    assert (await changed(stack, everyone.cursor)).cursor == everyone.cursor
    renamed = await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=ids[1].aggregate_id, display_name="Ben Two")
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=ids[1].aggregate_id, wait_for=renamed.result.consistency_token
        )
    )
    after = await changed(stack, everyone.cursor)
    assert [p.profile.display_name for p in after.profiles] == ["Ben Two"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await changed(stack, 0, 501)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(refused.value) == ["limit"]
