"""The events of a transaction are inserted by one statement (their states carried as JSON):
every byte of a state reads back as written, notification ids are given in the order of the
events, a version conflict fails the whole transaction, and the insert NOTIFYs the relay."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from c360_platform.pgstore import EventRecorder, Factory, ensure_schema, postgres_env

pytestmark = pytest.mark.integration


def test_states_ids_in_order_conflicts_and_notify(database_url: str) -> None:
    ensure_schema(database_url, "insert_events")
    factory = Factory(postgres_env(database_url, "insert_events", pool_size=1))
    recorder = factory.application_recorder()
    assert isinstance(recorder, EventRecorder)
    one, two = uuid4(), uuid4()
    states = [bytes(range(256)), b"", b'\\x00"quoted"\n', "Ünïcode".encode()]
    # Interleaved aggregates: the ids follow the order given, not the aggregates' order.
    events = [
        StoredEvent(one, 1, "topic:A", states[0]),
        StoredEvent(two, 1, "topic:B", states[1]),
        StoredEvent(one, 2, "topic:A", states[2]),
        StoredEvent(two, 2, "topic:B", states[3]),
    ]
    listener = psycopg.connect(database_url, autocommit=True)
    try:
        listener.execute(f'LISTEN "{recorder.channel_name}"')
        ids = recorder.insert_events(events)
        notified = list(listener.notifies(timeout=5, stop_after=1))
        with pytest.raises(IntegrityError):
            recorder.insert_events(
                [StoredEvent(two, 3, "topic:B", b"new"), StoredEvent(one, 2, "topic:A", b"again")]
            )
        stored = {
            n.id: (n.originator_id, n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(start=1, limit=10)
        }
    finally:
        listener.close()
        factory.close()
    assert ids is not None
    assert len(ids) == 4
    assert list(ids) == sorted(ids)
    assert [stored[i] for i in ids] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in events
    ]
    assert len(stored) == 4  # nothing of the failed transaction (two's version 3) is kept
    assert [n.channel for n in notified] == [recorder.channel_name]
