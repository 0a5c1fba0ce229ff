"""The profiles' search columns hold 64-bit integer tokens; a read model whose columns still
hold the text tokens of before ("bi1~" and 32 hex digits) is converted as the timeline
starts, without reading any value again: each text token becomes the integer the same value's
token is now, so the searches made before the change still find the same customers."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from c360_platform import pii
from c360_timeline.readmodel import SCHEMA, open_read_model

pytestmark = pytest.mark.integration

OLD_SCHEMA = (
    f"CREATE SCHEMA {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.profiles (customer_id uuid PRIMARY KEY, kind text NOT NULL,"
    " display_name text NOT NULL, name_key text NOT NULL, emails text[] NOT NULL,"
    " phones text[] NOT NULL, doc jsonb NOT NULL, updated_at timestamptz,"
    " at_risk_until timestamptz, name_starts text[] NOT NULL DEFAULT '{}',"
    " word_starts text[] NOT NULL DEFAULT '{}', search_stale boolean NOT NULL DEFAULT false,"
    " last_seq bigint)",
    f"CREATE INDEX profiles_by_email ON {SCHEMA}.profiles USING gin (emails)",
    f"CREATE INDEX profiles_by_name_start ON {SCHEMA}.profiles USING gin (name_starts)",
    f"CREATE TABLE {SCHEMA}.index_keys (name text PRIMARY KEY, key bytea NOT NULL)",
)


def test_text_search_tokens_become_the_same_values_integer_tokens(database_url: str) -> None:
    key = pii.new_key()
    index = pii.BlindIndex(key)
    ada, nobody = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in OLD_SCHEMA:
            conn.execute(statement)
        conn.execute(f"INSERT INTO {SCHEMA}.index_keys VALUES ('search', %s)", (key,))
        conn.execute(
            f"INSERT INTO {SCHEMA}.profiles (customer_id, kind, display_name, name_key, emails,"
            " phones, name_starts, word_starts, doc) VALUES"
            " (%s, 'person', '', '', %s, %s, %s, %s, '{}'), (%s, 'person', '', '', '{}', '{}',"
            " DEFAULT, DEFAULT, '{}')",
            (
                ada,
                [index("ada@quenzel.example")],
                [index("+4930123")],
                index.all(["a", "ad", "ada"]),
                index.all(["q", "qu"]),
                nobody,
            ),
        )
    view = open_read_model(database_url)
    try:
        assert view.index_key == key
        with psycopg.connect(database_url) as conn:
            types: dict[str, str] = dict(
                conn.execute(
                    "SELECT column_name, udt_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = 'profiles'"
                    " AND column_name IN ('emails', 'phones', 'name_starts', 'word_starts')",
                    (SCHEMA,),
                ).fetchall()
            )
            assert types == dict.fromkeys(
                ("emails", "phones", "name_starts", "word_starts"), "_int8"
            )
            rows = {
                r[0]: r[1:]
                for r in conn.execute(
                    f"SELECT customer_id, emails, phones, name_starts, word_starts"
                    f" FROM {SCHEMA}.profiles"
                ).fetchall()
            }
            assert rows[ada] == (
                [index.token("ada@quenzel.example")],
                [index.token("+4930123")],
                index.tokens(["a", "ad", "ada"]),
                index.tokens(["q", "qu"]),
            )
            assert rows[nobody] == ([], [], [], [])
            # A search's statement, by its token now, through the index built again.
            conn.execute("SET enable_seqscan = off")
            found = conn.execute(
                f"SELECT customer_id FROM {SCHEMA}.profiles WHERE name_starts @> ARRAY[%s::bigint]",
                (index.token("ad"),),
            ).fetchall()
            assert found == [(ada,)]
            plan = conn.execute(
                f"EXPLAIN SELECT customer_id FROM {SCHEMA}.profiles"
                " WHERE emails @> ARRAY[%s::bigint]",
                (index.token("ada@quenzel.example"),),
            ).fetchall()
            assert "profiles_by_email" in " ".join(r[0] for r in plan)
            # New profiles get the defaults of integer columns.
            conn.execute(
                f"INSERT INTO {SCHEMA}.profiles (customer_id, kind, display_name, name_key,"
                " emails, phones, doc) VALUES (%s, 'person', '', '', '{}', '{}', '{}')",
                (uuid.uuid4(),),
            )
    finally:
        view.datastore.close()
