"""The projection asks for a new customer's key in the background as its batch begins, and
never waits for it: a profile whose keys the process holds gets its search columns in the
batch's transaction; one whose keys it does not hold is written stale at once, and the
reindexer, woken for it, fills it with the key the prefetch brought. Against the read model on
a real PostgreSQL and a key holder of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from c360.events.v1 import customer_events_pb2 as ev
from c360_platform import pii
from c360_platform.envelope import Envelope, Publication, pack
from c360_timeline.readmodel import SCHEMA, ReadModel, open_read_model
from tests.keyholder import Clock, KeyHolder, Keys

pytestmark = pytest.mark.integration


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[ReadModel, KeyHolder, Keys]]:
    view = open_read_model(database_url)
    holder = KeyHolder()
    keys = Keys(holder, Clock())
    view.keys = keys
    try:
        yield view, holder, keys
    finally:
        keys.close()
        view.datastore.close()


def registered(holder: KeyHolder, position: int, email: str) -> tuple[uuid.UUID, Envelope]:
    """A new customer's registration as the customer service publishes it (sealed)."""
    cid, key = uuid.uuid4(), pii.new_key()
    holder.keys[str(cid)] = key
    payload = ev.CustomerRegistered(
        kind=ev.CUSTOMER_KIND_PERSON,
        display_name=pii.seal(key, cid, "Ada Quenzel"),
        emails=[pii.seal(key, cid, email)],
    )
    envelope = pack(
        source="customer",
        publication=Publication("customer", str(cid), payload),
        aggregate_id=cid,
        aggregate_version=1,
        position=position,
        occurred_at=datetime.now(UTC),
    )
    return cid, envelope


def search_row(url: str, cid: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT search_stale, emails, name_starts FROM {SCHEMA}.profiles"
            " WHERE customer_id = %s",
            (cid,),
        ).fetchone()
    assert row is not None
    return {"stale": row[0], "emails": row[1], "name_starts": row[2]}


def test_a_batch_does_not_wait_for_a_new_customers_key(
    world: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, holder, keys = world
    waits: list[float] = []
    known = keys.known

    def recorded(customer_ids: Any, *, wait: float = 0.0) -> Any:
        waits.append(wait)
        return known(customer_ids, wait=wait)

    monkeypatch.setattr(keys, "known", recorded)
    cid, envelope = registered(holder, 1, "bea@quenzel.example")
    holder.gate.clear()  # the key holder answers only when the test says
    try:
        assert view.apply([envelope]) == 1  # committed while the key request is unanswered
        holder.wait_for(1)  # asked ahead, as the batch began
        assert not holder.gate.is_set()
        assert waits == [0.0]  # the keys at hand, none waited for
        assert search_row(database_url, cid)["stale"] is True
        assert view.take_stale_written() is True  # the projector wakes the reindexer
        assert view.take_stale_written() is False  # once
    finally:
        holder.gate.set()
    assert view.reindex() == 1
    row = search_row(database_url, cid)
    assert row["stale"] is False
    assert row["emails"] == [view.index.token("bea@quenzel.example")]
    assert row["name_starts"]
    assert holder.requests == [[str(cid)]]  # asked once: the reindex found the prefetch's key
    assert keys.cached([cid]) == {cid: holder.keys[str(cid)]}  # the first read asks nothing


def test_a_profile_whose_keys_are_held_is_indexed_in_its_batch(
    world: Any, database_url: str
) -> None:
    view, holder, keys = world
    cid, envelope = registered(holder, 1, "cy@quenzel.example")
    assert keys([cid]) == {cid: holder.keys[str(cid)]}  # read before (the cache holds it)
    assert view.apply([envelope]) == 1
    row = search_row(database_url, cid)
    assert row["stale"] is False
    assert row["emails"] == [view.index.token("cy@quenzel.example")]
    assert view.reindex() == 0  # nothing left to the reindexer
    assert view.take_stale_written() is False  # nor woken for it
    assert len(holder.requests) == 1  # the read's request only
