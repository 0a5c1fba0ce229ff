"""Least privilege in PostgreSQL: one login role per service, owning only its schema.

A service's role (`<database>_<schema>`, e.g. `postgres_customer`) may log in to its
database and owns its schema and everything in it; it is no superuser, may not create
databases or roles, and has no rights on the other services' schemas or on `public`. Only the
administrator (the URL `c360 up` and operators hold) prepares roles, so a service that is
compromised reads and changes its own store and nothing else — and cannot run programs on
the server (`COPY … FROM PROGRAM` is a superuser's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import psycopg
from psycopg.sql import SQL, Identifier, Literal

from c360_platform.credentials import load_passwords as load_passwords
from c360_platform.credentials import url_for


def role_name(database: str, schema: str) -> str:
    return f"{database}_{schema}"[:63]


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def prepare(
    admin_url: str,
    schemas: Iterable[str | Sequence[str]],
    passwords: dict[str, str],
    may_create_schemas: Iterable[str] = (),
) -> dict[str, str]:
    """Create or update each service's role (named after its first schema), give it its
    schemas and what is in them, and take every other right from it; {first schema: URL the
    service connects with}. The roles of `may_create_schemas` may also create schemas (the
    timeline rebuilds beside its live read model, in a schema of its own, and swaps it in)."""
    creators = set(may_create_schemas)
    database = database_of(admin_url)
    urls: dict[str, str] = {}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(Identifier(database)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for owned in schemas:
            owned = (owned,) if isinstance(owned, str) else tuple(owned)
            schema = owned[0]
            role = role_name(database, schema)
            password = passwords[role]
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
                ).format(SQL(verb), Identifier(role), Literal(password))
            )
            rights = "CONNECT, TEMPORARY, CREATE" if schema in creators else "CONNECT, TEMPORARY"
            conn.execute(
                SQL("GRANT {} ON DATABASE {} TO {}").format(
                    SQL(rights), Identifier(database), Identifier(role)
                )
            )
            for each in owned:
                conn.execute(
                    SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                        Identifier(each), Identifier(role)
                    )
                )
                conn.execute(
                    SQL("ALTER SCHEMA {} OWNER TO {}").format(Identifier(each), Identifier(role))
                )
                _hand_over(conn, each, role)
            urls[schema] = url_for(admin_url, role, password)
    return urls


def _hand_over(conn: psycopg.Connection[tuple[object, ...]], schema: str, role: str) -> None:
    """Make `role` the owner of what an earlier (superuser) run created in `schema`."""
    kinds = {"r": "TABLE", "p": "TABLE", "S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_roles r ON r.oid = c.relowner WHERE n.nspname = %s AND r.rolname <> %s"
        " AND c.relkind IN ('r', 'p', 'S', 'v', 'm')",
        (schema, role),
    ).fetchall()
    for name, kind in rows:
        conn.execute(
            SQL("ALTER {} {}.{} OWNER TO {}").format(
                SQL(kinds[str(kind)]), Identifier(schema), Identifier(str(name)), Identifier(role)
            )
        )
    types = conn.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " JOIN pg_roles r ON r.oid = t.typowner WHERE n.nspname = %s AND r.rolname <> %s"
        " AND t.typtype = 'c' AND NOT EXISTS (SELECT 1 FROM pg_class c"
        " WHERE c.reltype = t.oid AND c.relkind <> 'c')",
        (schema, role),
    ).fetchall()
    functions = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n"
        " ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner"
        " WHERE n.nspname = %s AND r.rolname <> %s",
        (schema, role),
    ).fetchall()
    for (signature,) in functions:
        conn.execute(
            SQL("ALTER ROUTINE {} OWNER TO {}").format(SQL(str(signature)), Identifier(role))
        )
    for (name,) in types:
        conn.execute(
            SQL("ALTER TYPE {}.{} OWNER TO {}").format(
                Identifier(schema), Identifier(str(name)), Identifier(role)
            )
        )
