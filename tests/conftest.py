"""Session fixtures: real PostgreSQL and NATS servers (embedded, or named by the environment)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from c360_platform.embedded import EmbeddedNats, EmbeddedPostgres

# The property tests run beside the integration tests' servers (`-n auto` on 2 cores): a
# machine that stalls for a second there (a clean-clone CI run drew one input in 1.57 s) is not
# a failure of the property. The properties themselves are checked as before.
settings.register_profile(
    "c360", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("c360")


def with_database(url: str, dbname: str) -> str:
    """`url` with its database (the path) replaced by `dbname`; query and credentials kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server: `C360_POSTGRES_URL`, or an embedded one for the session."""
    from_env = os.environ.get("C360_POSTGRES_URL")
    if from_env:
        yield from_env
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a JetStream-enabled NATS server: `NATS_URL`, or an embedded one for the session."""
    from_env = os.environ.get("NATS_URL")
    if from_env:
        yield from_env
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
