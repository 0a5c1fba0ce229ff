"""Least privilege in PostgreSQL: one login role per service, owning only its schema.

A service's role (`<database>_<schema>`, e.g. `postgres_customer`) may log in to its
database and owns its schema and everything in it; it is no superuser, may not create
databases or roles, and has no rights on the other services' schemas or on `public`. Only the
administrator (the URL `c360 up` and operators hold) prepares roles, so a service that is
compromised reads and changes its own store and nothing else — and cannot run programs on
the server (`COPY … FROM PROGRAM` is a superuser's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
            _give_schemas(conn, database, owned, role, schema in creators)
            urls[schema] = url_for(admin_url, role, password)
    return urls


def _give_schemas(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    owned: Sequence[str],
    role: str,
    creates_schemas: bool,
) -> None:
    """Make `role` the owner of its schemas and of what is in them, with CONNECT and TEMPORARY
    on the database (and CREATE if it `creates_schemas`). An administrator that is no
    superuser (a cluster's application owner) may do it as a member of `role`: PostgreSQL
    lets a schema go only to a role with CREATE on the database, which the role has only
    meanwhile unless it creates schemas."""
    conn.execute(
        SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(
            Identifier(database), Identifier(role)
        )
    )
    for each in owned:
        conn.execute(
            SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                Identifier(each), Identifier(role)
            )
        )
        conn.execute(SQL("ALTER SCHEMA {} OWNER TO {}").format(Identifier(each), Identifier(role)))
        _hand_over(conn, each, role)
    if not creates_schemas:
        conn.execute(
            SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
                Identifier(database), Identifier(role)
            )
        )


class RolesMissing(RuntimeError):
    """Roles that are to own the services' schemas do not exist (yet)."""


def hand_over(
    admin_url: str,
    owned: Mapping[str, Sequence[str]],
    may_create_schemas: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Give each role of `owned` ({role: its schemas}) its schemas and what is in them, where
    the roles are made by someone else (a cluster's operator: CloudNativePG's managed roles)
    and the administrator is no superuser but a member of each. RolesMissing names the
    roles that do not exist yet (the caller waits for them). {role: schemas handed over}.
    Unlike `prepare`, CONNECT on the database stays PUBLIC's (CloudNativePG's PgBouncer
    connects as a role of its own): a role reaches no schema it is not given."""
    creators = set(may_create_schemas)
    database = database_of(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = {
            str(name)
            for (name,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(owned),)
            ).fetchall()
        }
        missing = [role for role in owned if role not in found]
        if missing:
            raise RolesMissing(f"no role {', '.join(missing)} yet (each service's own)")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for role, schemas in owned.items():
            _give_schemas(conn, database, schemas, role, schemas[0] in creators)
    return {role: list(schemas) for role, schemas in owned.items()}


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
