"""A search's reindex waits for a profile another reindex is filling (it would miss the
profile until that one commits); the background reindex skips it and moves on."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest

from c360_platform import pii
from c360_timeline.readmodel import SCHEMA, open_read_model

pytestmark = pytest.mark.integration

HOLD_S = 0.5


def test_a_searchs_reindex_waits_for_a_profile_another_reindex_holds(database_url: str) -> None:
    view = open_read_model(database_url)
    cid, key = uuid.uuid4(), pii.new_key()
    view.keys = lambda ids: {cid: key}
    name = pii.seal(key, cid, "Zirkus AG")  # as the events seal it
    doc = {"customer_id": str(cid), "display_name": name, "emails": [], "phones": []}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.profiles (customer_id, kind, display_name, name_key, emails,"
            " phones, name_starts, word_starts, search_stale, doc)"
            " VALUES (%s, 'organisation', %s, '', '{}', '{}', '{}', '{}', true, %s)",
            (cid, name, json.dumps(doc)),
        )
    held = threading.Event()

    def other_reindex() -> None:
        # Holds the row as the background reindex does while it fetches keys, then fills it.
        with psycopg.connect(database_url) as conn, conn.transaction():
            conn.execute(
                f"SELECT 1 FROM {SCHEMA}.profiles WHERE customer_id = %s FOR UPDATE", (cid,)
            )
            held.set()
            time.sleep(HOLD_S)
            conn.execute(
                f"UPDATE {SCHEMA}.profiles SET name_starts = '{{1}}', search_stale = false"
                " WHERE customer_id = %s",
                (cid,),
            )

    try:
        other = threading.Thread(target=other_reindex)
        other.start()
        assert held.wait(5)
        started = time.monotonic()
        assert view.reindex() == 0  # the background's way: skips the held row at once
        assert time.monotonic() - started < HOLD_S / 2
        assert view.stale_searches()  # so a search right now would miss it
        assert view.reindex(wait=True) == 0  # the search's way: waits, finds it filled
        assert time.monotonic() - started >= HOLD_S * 0.8
        assert not view.stale_searches()
        other.join()
    finally:
        view.datastore.close()
