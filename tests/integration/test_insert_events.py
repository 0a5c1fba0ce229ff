"""The events of a transaction are inserted by one statement (their states carried as JSON):
every byte of a state reads back as written, notification ids are given in the order of the
events, a version conflict fails the whole transaction, and the insert NOTIFYs the relay. A
transaction of commands (metadata, request ids, events) is one round trip to the server."""

from __future__ import annotations

from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg._pipeline_base import BasePipeline

from c360_platform.pgstore import EventRecorder, Factory, ensure_schema, postgres_env
from c360_platform.store import CommandContext, EventMetadata, SaveContext

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


async def test_the_relays_reads_give_the_librarys_notifications(database_url: str) -> None:
    """The relay's reads of the log (in a thread, and on its own connection on its event
    loop) take rows in binary: the same notifications, byte for byte and type for type, as
    the library's own read, each with its metadata (none stored here: empty)."""
    ensure_schema(database_url, "read_log")
    factory = Factory(postgres_env(database_url, "read_log", pool_size=1))
    recorder = factory.application_recorder()
    assert isinstance(recorder, EventRecorder)
    one, two = uuid4(), uuid4()
    try:
        recorder.insert_events(
            [
                StoredEvent(one, 1, "topic:A", bytes(range(256))),
                StoredEvent(two, 1, "topic:B", b""),
                StoredEvent(one, 2, "topic:A", "Ünïcode".encode()),
            ]
        )
        library = recorder.select_notifications(start=1, limit=10)
        in_thread = recorder.select_with_metadata(0, 10)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            on_loop = await recorder.select_with_metadata_async(conn, 0, 10)
        after_first = recorder.select_with_metadata(library[0].id, 1)
    finally:
        factory.close()
    assert len(library) == 3
    for read in (in_thread, on_loop):
        assert [n for n, _ in read] == library
        assert [m for _, m in read] == [EventMetadata("", "", "", "")] * 3
        for notification, _ in read:
            assert type(notification.originator_id) is UUID
            assert type(notification.state) is bytes
            assert type(notification.id) is int
    assert [n for n, _ in after_first] == library[1:2]


def _command(request_id: str, aggregate_id: UUID) -> SaveContext:
    ctx = CommandContext(
        command="Register", request_id=request_id, fingerprint="f", correlation_id="c"
    )
    return SaveContext(ctx, aggregate_id, 1, {})


def test_a_batch_of_commands_is_one_round_trip(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN, metadata, request ids, the table lock, the events and COMMIT are synced once
    (each sync is a round trip to the server, and the table lock was held across those
    after it); a request id recorded already still fails the whole batch as an
    IntegrityError of its own (the group-commit writer isolates the command by it), with
    nothing of the batch kept."""
    ensure_schema(database_url, "one_round_trip")
    factory = Factory(postgres_env(database_url, "one_round_trip", pool_size=1))
    recorder = factory.application_recorder()
    assert isinstance(recorder, EventRecorder)
    syncs: list[int] = []
    enqueue = BasePipeline._enqueue_sync

    def counted(self: BasePipeline) -> None:
        syncs.append(1)
        enqueue(self)

    one, two, three = uuid4(), uuid4(), uuid4()
    try:
        monkeypatch.setattr(BasePipeline, "_enqueue_sync", counted)
        ids = recorder.insert_events(
            [StoredEvent(one, 1, "topic:A", b"1"), StoredEvent(two, 1, "topic:A", b"2")],
            c360_batch=[(_command("r-1", one), 1), (_command("r-2", two), 1)],
        )
        first = len(syncs)
        with pytest.raises(IntegrityError):
            recorder.insert_events(
                [StoredEvent(three, 1, "topic:A", b"3"), StoredEvent(two, 2, "topic:A", b"x")],
                c360_batch=[(_command("r-3", three), 1), (_command("r-2", two), 1)],
            )
        monkeypatch.undo()
        stored = recorder.select_notifications(start=1, limit=10)
        outcome = recorder.find_outcome("r-2")
        lost = recorder.find_outcome("r-3")
    finally:
        factory.close()
    assert first == 1
    assert ids is not None
    assert len(ids) == 2
    assert [(n.originator_id, n.originator_version) for n in stored] == [(one, 1), (two, 1)]
    assert outcome is not None
    assert outcome[0] == "Register"
    assert lost is None
