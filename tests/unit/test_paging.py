"""Every service's page sizes and page tokens (`c360_platform.paging`): a token reads back as
the key it was made of, and anything else a client sends as a token or a size is
INVALID_ARGUMENT naming its field (never INTERNAL)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c360_platform import paging
from c360_platform.errors import InvalidArgument
from c360_platform.rpc import status_for


def _refused(call: object) -> list[str]:
    assert callable(call)
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert status_for(caught.value)[0].name == "INVALID_ARGUMENT"
    return [str(v) for v in caught.value.violations]


def test_a_size_of_zero_is_the_default_and_above_the_maximum_is_refused() -> None:
    assert paging.count(0, maximum=200, default=50) == 50
    assert paging.count(1, maximum=200, default=50) == 1
    assert paging.count(200, maximum=200, default=50) == 200
    assert _refused(lambda: paging.count(201, maximum=200, default=50)) == [
        "page_size: must be at most 200"
    ]
    assert _refused(lambda: paging.count(21, maximum=20, default=5, field="limit")) == [
        "limit: must be at most 20"
    ]


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.uuids(),
)
def test_a_keyset_token_reads_back_as_its_time_and_id(at: datetime, key: UUID) -> None:
    assert paging.read_keyset_token(paging.keyset_token((at, key))) == (at, key)


@given(st.datetimes(timezones=st.just(UTC)), st.text(), st.integers())
def test_a_token_reads_back_in_the_kinds_it_was_made_of(at: datetime, source: str, n: int) -> None:
    made = paging.token(at, source, n)
    assert paging.read_token(made, datetime.fromisoformat, str, int) == (at, source, n)


def test_no_token_is_the_first_page() -> None:
    assert paging.read_keyset_token("") is None


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        _b64({"at": "2026-01-01T00:00:00+00:00"}),
        _b64(7),
        _b64(["2026-01-01T00:00:00+00:00"]),
        _b64(["2026-01-01T00:00:00+00:00", str(UUID(int=1)), "extra"]),
        _b64(["yesterday", str(UUID(int=1))]),
        _b64(["2026-01-01T00:00:00+00:00", "not-a-uuid"]),
        _b64(["2026-01-01T00:00:00+00:00", 5]),  # a number where the id is: UUID(5) fails
        _b64([None, None]),
    ],
)
def test_anything_but_a_token_of_ours_is_refused_by_name(token: str) -> None:
    assert _refused(lambda: paging.read_keyset_token(token)) == [
        "page_token: not a token from a previous page"
    ]


def test_a_token_bound_to_a_request_continues_only_that_request() -> None:
    """Read with other filters, a token continued the other list from where its page ended,
    without an error: rows of a list the caller never asked for the first page of."""
    from c360.events.v1 import sales_events_pb2 as lev
    from c360.events.v1 import sales_order_events_pb2 as oev
    from c360.sales.v1 import sales_service_pb2 as sapi

    at, key = datetime(2026, 12, 1, tzinfo=UTC), UUID(int=7)
    asked = sapi.ListLeadsRequest(state=lev.LEAD_STATE_NEW, page_size=10)
    made = paging.keyset_token((at, key), asked)
    again = sapi.ListLeadsRequest(state=lev.LEAD_STATE_NEW, page_size=50, page_token=made)
    assert paging.read_keyset_token(made, again) == (at, key)
    for other in [
        sapi.ListLeadsRequest(state=lev.LEAD_STATE_QUALIFIED),
        sapi.ListOrdersRequest(state=oev.ORDER_STATE_PENDING),
    ]:
        assert _refused(lambda o=other: paging.read_keyset_token(made, o)) == [
            "page_token: is the token of another request (other filters or list): send it"
            " with the request whose page it ended, or ask again without it"
        ]
    # A token made before tokens were bound reads as it did.
    assert paging.read_keyset_token(paging.keyset_token((at, key)), again) == (at, key)
