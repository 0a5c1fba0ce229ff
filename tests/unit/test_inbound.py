"""Requests with NUL characters or impossible timestamps are refused, each field named."""

from __future__ import annotations

import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import inbound
from c360_platform.errors import InvalidArgument


def _fields(request: object) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        inbound.check(request)
    return [v.field for v in caught.value.violations]


def test_nul_characters_are_refused_wherever_they_are() -> None:
    request = capi.RegisterCustomerRequest(
        request_id="r\x00", display_name="Ann", emails=["a@example.com", "b\x00@example.com"]
    )
    assert _fields(request) == ["request_id", "emails[1]"]


def test_timestamps_outside_years_1900_to_2999_or_with_bad_nanos_are_refused() -> None:
    request = tapi.GetTimelineRequest(customer_id="x")
    request.since.nanos = -1
    request.until.seconds = 253_402_300_800  # 10000-01-01
    assert _fields(request) == ["since", "until"]
    for seconds in (-62_135_596_800, -2_208_988_801, 32_503_680_000, 253_402_300_799):
        # 0001-01-01, 1899-12-31T23:59:59, 3000-01-01, 9999-12-31T23:59:59
        request = tapi.GetTimelineRequest(customer_id="x")
        request.since.seconds = seconds
        with pytest.raises(InvalidArgument, match="years 1900 to 2999"):
            inbound.check(request)
    for seconds in (inbound.MIN_SECONDS, inbound.MAX_SECONDS):
        request = tapi.GetTimelineRequest(customer_id="x")
        request.since.seconds = seconds
        inbound.check(request)  # the first and last instants taken


def test_good_requests_and_undecodable_bodies() -> None:
    request = tapi.GetTimelineRequest(customer_id="x", sources=["customer"])
    request.since.seconds = 0
    inbound.check(request)  # nothing to refuse
    decode = inbound.tolerant(capi.RegisterCustomerRequest.FromString)
    assert decode is not None
    assert _fields(decode(b"\xff\xff\xff")) == ["request"]
