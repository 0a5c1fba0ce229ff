"""The timeline's ListChangedProfiles: every profile once from cursor 0, then only those that
changed after the cursor, each once at its latest change, in pages that lose nobody."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

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


async def test_a_read_mask_gives_the_fields_it_names_as_the_whole_profile_has_them(
    stack: Stack,
) -> None:
    reply = await register(stack.customer, "Dee Mask", "dee.mask@example.com")
    customer_id = reply.result.aggregate_id
    tagged = await stack.customer.ChangeTags(
        capi.ChangeTagsRequest(customer_id=customer_id, add=["vip"])
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=customer_id, wait_for=tagged.result.consistency_token)
    )
    full = {p.profile.customer_id: p for p in (await changed(stack, 0)).profiles}[customer_id]
    # What the mask leaves out:
    assert full.profile.provenance
    assert full.profile.touches
    paths = ["customer_id", "display_name", "emails", "tags", "attributes", "at_risk"]
    masked_page = await stack.timeline.ListChangedProfiles(
        tapi.ListChangedProfilesRequest(after_cursor=0, read_mask=FieldMask(paths=paths))
    )
    masked = {p.profile.customer_id: p for p in masked_page.profiles}[customer_id]
    expected = tapi.Profile()
    FieldMask(paths=paths).MergeMessage(full.profile, expected)
    assert masked.profile == expected
    assert masked.profile.display_name == "Dee Mask"  # revealed, as in the whole profile
    assert list(masked.profile.emails) == ["dee.mask@example.com"]
    assert masked.cursor == full.cursor
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.timeline.ListChangedProfiles(
            tapi.ListChangedProfilesRequest(read_mask=FieldMask(paths=["tags", "profile.tags"]))
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(refused.value) == ["read_mask.paths[1]"]


async def test_an_ask_with_max_wait_is_answered_at_the_next_change(stack: Stack) -> None:
    before = await register(stack.customer, "Eve Before", "eve.before@example.com")
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(
            customer_id=before.result.aggregate_id, wait_for=before.result.consistency_token
        )
    )
    caught_up = (await changed(stack, 0)).cursor

    def waiting(after: int, seconds: float) -> tapi.ListChangedProfilesRequest:
        request = tapi.ListChangedProfilesRequest(after_cursor=after)
        request.max_wait.FromTimedelta(timedelta(seconds=seconds))
        return request

    # Nothing changes: an empty answer after the wait, the cursor where it was.
    started = time.monotonic()
    idle = await stack.timeline.ListChangedProfiles(waiting(caught_up, 0.4), timeout=10)
    assert time.monotonic() - started >= 0.35
    assert (list(idle.profiles), idle.cursor) == ([], caught_up)
    # A change while the ask waits: answered with it, long before the wait's end.
    ask = asyncio.ensure_future(
        stack.timeline.ListChangedProfiles(waiting(caught_up, 8.0), timeout=20)
    )
    await asyncio.sleep(0.3)
    assert not ask.done()
    started = time.monotonic()
    await register(stack.customer, "Eve After", "eve.after@example.com")
    answered = await asyncio.wait_for(ask, 10)
    assert time.monotonic() - started < 4.0
    assert [p.profile.display_name for p in answered.profiles] == ["Eve After"]
    assert answered.cursor > caught_up
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.timeline.ListChangedProfiles(waiting(0, -1.0))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(refused.value) == ["max_wait"]


async def test_a_merge_and_an_unmerge_list_the_duplicate_again_with_its_survivor(
    stack: Stack,
) -> None:
    """A follower learns that a customer was merged into another (marketing takes it out of
    every segment) and that it was unmerged, from the duplicate's own changed profile; a chain
    names its end."""
    ids = []
    for name in ("Eva", "Eve", "Evi"):
        ids.append((await register(stack.customer, name, f"{name}@example.com")).result)
    end, middle, first = (r.aggregate_id for r in ids)
    before = (await changed(stack, 0)).cursor

    async def merged(survivor: str, duplicate: str) -> None:
        reply = await stack.customer.MergeCustomers(
            capi.MergeCustomersRequest(
                survivor_id=survivor, duplicate_id=duplicate, reason="one person"
            )
        )
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=duplicate, wait_for=reply.result.consistency_token)
        )

    await merged(middle, first)
    await merged(end, middle)
    after = await changed(stack, before)
    into = {p.profile.customer_id: p.profile.merged_into for p in after.profiles}
    assert into == {first: end, middle: end, end: ""}
    masked = await stack.timeline.ListChangedProfiles(
        tapi.ListChangedProfilesRequest(
            after_cursor=before, read_mask=FieldMask(paths=["customer_id", "merged_into"])
        )
    )
    assert {p.profile.customer_id: p.profile.merged_into for p in masked.profiles} == into
    unmerged = await stack.customer.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=middle))
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=middle, wait_for=unmerged.result.consistency_token)
    )
    again = await changed(stack, after.cursor)
    into = {p.profile.customer_id: p.profile.merged_into for p in again.profiles}
    assert into[middle] == ""
    # The first one is merged into the middle one still, its chain ending there now.
    profile = await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=first))
    assert profile.profile.merged_into == middle
