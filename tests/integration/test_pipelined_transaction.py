"""`pipelined_transaction`: a transaction whose BEGIN goes with its first statements. What
it writes commits together; a failed statement or an exception in the block leaves nothing
written and the connection idle and usable."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import ProgrammingError
from psycopg.pq import TransactionStatus

from c360_platform.pgstore import pipelined_transaction

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[int]]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS pipelined (n int PRIMARY KEY)")
        c.execute("TRUNCATE pipelined")
        yield c


def rows(conn: psycopg.Connection[tuple[int]]) -> list[int]:
    return [r[0] for r in conn.execute("SELECT n FROM pipelined ORDER BY n").fetchall()]


def test_the_statements_commit_together(conn: psycopg.Connection[tuple[int]]) -> None:
    with pipelined_transaction(conn):
        cur = conn.cursor()
        cur.execute("INSERT INTO pipelined VALUES (1), (2) RETURNING n")
        assert sorted(r[0] for r in cur.fetchall()) == [1, 2]
        with psycopg.connect(conn.info.dsn, password=conn.info.password) as other:
            seen = other.execute("SELECT count(*) FROM pipelined").fetchone()
        assert seen == (0,)  # not committed yet: one transaction
        conn.execute("INSERT INTO pipelined VALUES (3)")
    assert rows(conn) == [1, 2, 3]
    assert conn.info.transaction_status == TransactionStatus.IDLE


def insert_twice(conn: psycopg.Connection[tuple[int]]) -> None:
    with pipelined_transaction(conn):
        conn.execute("INSERT INTO pipelined VALUES (2)")
        conn.execute("INSERT INTO pipelined VALUES (1)")  # a duplicate: fails at the end


def insert_then_raise(conn: psycopg.Connection[tuple[int]]) -> None:
    cur = conn.cursor()
    with pipelined_transaction(conn):
        cur.execute("INSERT INTO pipelined VALUES (5) RETURNING n")
        assert cur.fetchone() == (5,)  # sent and executed: the transaction is open
        raise ValueError("the caller's")


def test_a_failed_statement_leaves_nothing(conn: psycopg.Connection[tuple[int]]) -> None:
    conn.execute("INSERT INTO pipelined VALUES (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_twice(conn)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert rows(conn) == [1]


def test_an_exception_in_the_block_leaves_nothing(conn: psycopg.Connection[tuple[int]]) -> None:
    with pytest.raises(ValueError, match="the caller's"):
        insert_then_raise(conn)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert rows(conn) == []


def test_it_needs_autocommit(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        transaction = pipelined_transaction(conn)
        with pytest.raises(ProgrammingError, match="autocommit"):
            transaction.__enter__()
