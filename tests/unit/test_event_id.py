"""`envelope.event_id`, written out with hashlib, is exactly `uuid.uuid5` of its name, for any
source, aggregate id (a UUID or its text) and version."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from c360_platform.envelope import _EVENT_NAMESPACE, event_id


@given(st.text(max_size=30), st.uuids(), st.integers(min_value=0, max_value=2**63 - 1))
def test_event_id_is_uuid5(source: str, aggregate_id: uuid.UUID, version: int) -> None:
    expected = str(uuid.uuid5(_EVENT_NAMESPACE, f"{source}:{aggregate_id}:{version}"))
    assert event_id(source, aggregate_id, version) == expected
    assert event_id(source, str(aggregate_id), version) == expected
