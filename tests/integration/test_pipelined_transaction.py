"""`pipelined_transaction`: a transaction whose BEGIN goes with its first statements. What
it writes commits together; a failed statement or an exception in the block leaves nothing
written and the connection idle and usable."""

from __future__ import annotations

import contextlib
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


def _fail_then_select(conn: psycopg.Connection[tuple[int]], selects: bool) -> None:
    """A transaction whose first write fails, with a statement after it if `selects`."""
    with contextlib.suppress(psycopg.errors.UniqueViolation), pipelined_transaction(conn):
        conn.execute("INSERT INTO pipelined VALUES (1)")
        if selects:
            conn.execute("SELECT %s::int + 1", (0,))


def _select(conn: psycopg.Connection[tuple[int]], i: int) -> tuple[int] | None:
    with pipelined_transaction(conn):
        return conn.execute("SELECT %s::int + 1", (i,)).fetchone()


def test_statements_of_failed_transactions_are_not_taken_for_prepared(
    conn: psycopg.Connection[tuple[int]],
) -> None:
    """psycopg prepares a statement as it is run for the sixth time and takes it for prepared
    at once; in a pipeline that failed before its turn the server never parsed it. Each
    rollback forgets the connection's prepared statements, so that its later uses do not fail
    with "prepared statement does not exist" (a ROLLBACK run as a statement stopped doing so
    once psycopg had prepared the ROLLBACK itself, at its sixth)."""
    conn.execute("INSERT INTO pipelined VALUES (1)")
    for _ in range(6):
        _fail_then_select(conn, selects=False)
    got = [_select(conn, 0)]
    for _ in range(6):  # the select's second to sixth runs, each after a failed statement
        _fail_then_select(conn, selects=True)
    got += [_select(conn, i) for i in (1, 2)]
    assert got == [(1,), (2,), (3,)]
    assert conn.info.transaction_status == TransactionStatus.IDLE
