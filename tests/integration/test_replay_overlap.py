"""A rebuild's replay begins each batch while the one before it commits (`ReadModel.begin`,
then `Begun.commit`, the shadow's `carry`): the later batch's writes reach PostgreSQL only as
it commits. Against the read model on a real PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Timeout
from datetime import UTC, datetime

import psycopg
import pytest

from c360.events.v1 import customer_events_pb2 as ev
from c360_platform.envelope import Envelope, Publication, pack
from c360_timeline.readmodel import SCHEMA, Carry, open_read_model

pytestmark = pytest.mark.integration


def event(cid: uuid.UUID, version: int, position: int, payload: object) -> Envelope:
    return pack(
        source="customer",
        publication=Publication("customer", str(cid), payload),  # type: ignore[arg-type]
        aggregate_id=cid,
        aggregate_version=version,
        position=position,
        occurred_at=datetime.now(UTC),
    )


def registered(cid: uuid.UUID, position: int) -> Envelope:
    person = ev.CUSTOMER_KIND_PERSON
    return event(cid, 1, position, ev.CustomerRegistered(kind=person, display_name="Ada Quenzel"))


def test_a_batch_begun_beside_the_commit_before_it_sends_nothing_until_its_own_commit(
    database_url: str,
) -> None:
    # Batch one registers a customer among many (its statements take PostgreSQL a while);
    # batch two renames her. Had batch two's writes gone out as they were made, its insert of
    # her profile ran before batch one's got there, which then waited for batch two's
    # transaction, itself waiting for batch one to commit: a rebuild hung for good.
    view = open_read_model(database_url)
    view.carry = Carry()
    ada = uuid.uuid4()
    many = [registered(uuid.uuid4(), 2 + n) for n in range(MANY)]
    renamed = event(ada, 2, MANY + 2, ev.CustomerRenamed(display_name="Ada Quenzel-Ruiz"))
    try:
        first = view.begin([registered(ada, 1), *many])
        second = view.begin([renamed])
        with ThreadPoolExecutor(1) as thread:
            committing = thread.submit(first.commit)
            try:
                assert committing.result(timeout=30) == MANY + 1
            except Timeout:
                second.commit()  # ends the wait, so that the test ends
                pytest.fail("the first batch's commit waited for the second batch")
        assert second.commit() == 1
    finally:
        view.datastore.close()
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT display_name, doc->>'display_name' FROM {SCHEMA}.profiles"
            " WHERE customer_id = %s",
            (ada,),
        ).fetchone()
        count = conn.execute(f"SELECT count(*) FROM {SCHEMA}.entries").fetchone()
    assert row == ("Ada Quenzel-Ruiz", "Ada Quenzel-Ruiz")
    assert count == (MANY + 2,)


MANY = 3000
