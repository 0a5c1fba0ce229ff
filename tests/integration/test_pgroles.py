"""Each service works on a PostgreSQL role of its own that owns its schema and nothing else."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import pgroles, registry
from tests.integration.conftest import open_stack
from tests.integration.helpers import register

pytestmark = pytest.mark.integration


async def test_services_run_on_roles_that_reach_only_their_own_schema(
    database_url: str, fresh_nats_url: str, tmp_path: Path
) -> None:
    owned = {name: spec.schemas for name, spec in registry.services().items()}
    schemas = {name: each[0] for name, each in owned.items()}
    database = pgroles.database_of(database_url)
    passwords = pgroles.load_passwords(
        tmp_path / "roles.json", [pgroles.role_name(database, s) for s in schemas.values()]
    )
    urls = pgroles.prepare(database_url, owned.values(), passwords, may_create_schemas=["timeline"])
    async with open_stack(database_url, fresh_nats_url, lambda name: urls[schemas[name]]) as stack:
        reply = await register(stack.customer, "Least Privilege", "lp@example.com")
        shown = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
            ),
            timeout=20,
        )
        assert [e.type for e in shown.entries] == ["customer.registered"]
        # The timeline's role rebuilds beside the live read model and swaps it in.
        rebuilt = [r async for r in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
        assert rebuilt[-1].done
        assert (
            len(
                (
                    await stack.timeline.GetTimeline(
                        tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id)
                    )
                ).entries
            )
            == 1
        )
    with psycopg.connect(urls["customer"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customer.customer_events").fetchone() == (1,)
        for refused in (
            "SELECT count(*) FROM timeline.entries",  # another service's schema
            "COPY (SELECT 1) TO PROGRAM 'id'",  # a superuser's
            "CREATE TABLE public.anything (a int)",
            "CREATE ROLE intruder",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
    # Preparing again (every `c360 up` does) changes nothing that works.
    assert pgroles.prepare(database_url, owned.values(), passwords, ["timeline"]) == urls


def test_a_clusters_application_owner_hands_each_service_role_its_schemas(
    database_url: str,
) -> None:
    """On a cluster CloudNativePG makes the roles (managed roles, each with its Secret) and the
    application owner is no superuser but a member of each (`c360 ops prepare` runs as it):
    it hands every service's role its schemas, those it had created itself included (a
    deployment from before the roles), and each role then reaches its own schemas only."""
    from psycopg.sql import SQL, Identifier, Literal

    from c360_platform.credentials import url_for

    database = pgroles.database_of(database_url)
    admin = f"{database}_owner"
    owned = {f"{database}_{spec.schemas[0]}": spec.schemas for spec in registry.services().values()}
    with psycopg.connect(database_url, autocommit=True) as conn:  # what CloudNativePG does
        conn.execute(SQL("CREATE ROLE {} LOGIN PASSWORD 'admin-pw'").format(Identifier(admin)))
        conn.execute(
            SQL("ALTER DATABASE {} OWNER TO {}").format(Identifier(database), Identifier(admin))
        )
        for role in owned:
            conn.execute(
                SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(Identifier(role), Literal(role))
            )
        conn.execute(SQL("ALTER SCHEMA public OWNER TO pg_database_owner"))
    admin_url = url_for(database_url, admin, "admin-pw")
    with psycopg.connect(admin_url, autocommit=True) as conn:  # the shared role's old schema
        conn.execute("CREATE SCHEMA customer")
        conn.execute("CREATE TABLE customer.customer_events (id int)")
        conn.execute("INSERT INTO customer.customer_events VALUES (1)")
    with pytest.raises(pgroles.RolesMissing):  # not yet a member of the roles: nothing given
        pgroles.hand_over(admin_url, {**owned, f"{database}_later": ["later"]})
    with psycopg.connect(database_url, autocommit=True) as conn:  # managed roles' inRoles
        for role in owned:
            conn.execute(SQL("GRANT {} TO {}").format(Identifier(role), Identifier(admin)))
    given = pgroles.hand_over(admin_url, owned, may_create_schemas=["timeline"])
    assert given == {role: list(schemas) for role, schemas in owned.items()}
    assert pgroles.hand_over(admin_url, owned, ["timeline"]) == given  # again: the same

    customer = url_for(database_url, f"{database}_customer", f"{database}_customer")
    with psycopg.connect(database_url) as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT n.nspname, r.rolname FROM pg_namespace n JOIN pg_roles r"
                " ON r.oid = n.nspowner WHERE n.nspname = ANY(%s)",
                ([s for schemas in owned.values() for s in schemas],),
            ).fetchall()
        )
        table_owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'customer'"
        ).fetchone()
    assert owners == {s: role for role, schemas in owned.items() for s in schemas}
    assert table_owner == (f"{database}_customer",)
    with psycopg.connect(customer, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customer.customer_events").fetchone() == (1,)
        conn.execute("CREATE TABLE customer.more (a int)")  # its own schema: its tables
        for refused in (
            "SELECT count(*) FROM customer.customer_events JOIN timeline.entries ON true",
            "CREATE TABLE timeline.mine (a int)",
            "CREATE TABLE public.anything (a int)",
            "CREATE SCHEMA elsewhere",  # only the timeline's role creates schemas
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
    timeline = url_for(database_url, f"{database}_timeline", f"{database}_timeline")
    with psycopg.connect(timeline, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA timeline_rebuild")  # it rebuilds beside the live one
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM customer.customer_events")
