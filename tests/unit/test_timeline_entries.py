"""The reply each timeline row keeps (c360_timeline.entries): read from its bytes, an entry is
the one its columns make; what is sealed stays out of the bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from c360_platform import pii
from c360_timeline.entries import entry_message, needs_columns, stored
from c360_timeline.projection import Entry

CUSTOMER = uuid.UUID("0b9c1d4e-2f3a-4b5c-8d6e-7f8091a2b3c4")
# What JSON details hold (Struct's numbers are doubles: integers as large as a double keeps).
SCALARS = st.none() | st.booleans() | st.text(max_size=12) | st.integers(-(2**53), 2**53)
DETAILS = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        SCALARS | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
    max_size=5,
)


def _entry(summary: str, details: dict[str, Any], seconds: int = 0) -> Entry:
    return Entry(
        event_id=str(uuid.uuid4()).upper(),  # the row keeps ids as PostgreSQL writes them
        customer_id=str(CUSTOMER),
        occurred_at=datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
        + timedelta(seconds=seconds),
        source="customer",
        position=41,
        type="customer.registered",
        summary=summary,
        details=details,
        aggregate_id=CUSTOMER.hex,  # a uuid PostgreSQL reads, written another way
        aggregate_version=3,
    )


def _row(e: Entry, seq: int = 7) -> dict[str, Any]:
    """The entry as the read model's row reads back (ids as text, in lower case)."""
    message, sealed = stored(e)
    return {
        "entry_seq": seq,
        "event_id": str(uuid.UUID(e.event_id)),
        "customer_id": e.customer_id,
        "occurred_at": e.occurred_at,
        "source": e.source,
        "position": e.position,
        "type": e.type,
        "summary": e.summary,
        "details": e.details,
        "aggregate_id": str(uuid.UUID(e.aggregate_id)),
        "aggregate_version": e.aggregate_version,
        "message": message,
        "sealed": sealed,
    }


@given(summary=st.text(max_size=20), details=DETAILS, seconds=st.integers(0, 10**9))
def test_an_entry_read_from_its_kept_bytes_is_the_one_its_columns_make(
    summary: str, details: dict[str, Any], seconds: int
) -> None:
    # Text that only looks like a sealed value is read from the columns (next test).
    assume(not pii.holds_sealed([summary, details]))
    row = _row(_entry(summary, details, seconds))
    assert not needs_columns(row)
    kept = entry_message(row)
    assert kept == entry_message({**row, "message": None, "sealed": None})
    assert (kept.cursor, kept.summary, kept.event_id) == (7, summary, row["event_id"])


def test_a_sealed_entry_keeps_its_summary_and_details_out_of_its_bytes() -> None:
    name = pii.seal(pii.new_key(), CUSTOMER, "Grace Hopper")
    row = _row(_entry(f"Registered {name}", {"display_name": name, "kind": "person"}))
    assert row["sealed"]
    assert needs_columns(row)
    assert b"pii1~" not in row["message"]
    assert b"person" not in row["message"]
    # The reply takes them from the columns (revealed there before it is made).
    row["summary"], row["details"] = "Registered Grace Hopper", {"display_name": "Grace Hopper"}
    reply = entry_message(row)
    assert (reply.summary, dict(reply.details)) == (row["summary"], row["details"])
    assert reply == entry_message({**row, "message": None})


def test_text_that_only_looks_sealed_is_read_from_the_columns_as_it_is() -> None:
    """`pii.holds_sealed` is one scan for "pii1~" (it may say yes of text that is not sealed,
    never no of text that is): such an entry leaves its summary out of its bytes all the same,
    and revealing leaves the text as it is. A summary "pii1~" once failed the test above."""
    row = _row(_entry("pii1~", {"note": "see pii1~abc"}))
    assert row["sealed"]
    assert needs_columns(row)
    assert b"pii1~" not in row["message"]
    reply = entry_message(row)
    assert (reply.summary, dict(reply.details)) == ("pii1~", {"note": "see pii1~abc"})


def test_a_row_written_before_rows_kept_their_reply_is_made_from_its_columns() -> None:
    row = {**_row(_entry("Owner set", {"owner_id": "u-7"})), "message": None, "sealed": None}
    assert needs_columns(row)
    reply = entry_message(row)
    assert (reply.summary, reply.details["owner_id"], reply.source_position) == (
        "Owner set",
        "u-7",
        41,
    )
