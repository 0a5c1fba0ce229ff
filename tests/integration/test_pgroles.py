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
