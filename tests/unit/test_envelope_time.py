"""Times on the wire: `envelope.timestamp` (integer arithmetic) gives exactly what protobuf's
own `Timestamp.FromDatetime` gives, for any moment, naive (taken as UTC) or in any zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from c360_platform.envelope import moment, timestamp

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), zones)
def test_timestamp_is_protobufs_own(moment: datetime, zone: timezone | None) -> None:
    moment = moment.replace(tzinfo=zone)
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert timestamp(moment) == expected


@given(st.integers(-62_135_596_800, 253_402_300_799), st.integers(0, 999_999_999))
def test_moment_is_protobufs_own(seconds: int, nanos: int) -> None:
    # The projection's reading of an envelope's time, against protobuf's ToDatetime.
    ts = Timestamp(seconds=seconds, nanos=nanos)
    assert moment(ts) == ts.ToDatetime(tzinfo=UTC)
    assert moment(ts).utcoffset() == timedelta(0)
