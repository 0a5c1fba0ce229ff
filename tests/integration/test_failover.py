"""Two complete sets of services on one PostgreSQL and one NATS (two pods per Deployment):
when the set holding the relays' and the projector's locks goes, the other takes over and
its commands reach its timeline. (`make failover` measures it with kill -9.)"""

from __future__ import annotations

import pytest

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.supervisor import stop_hosts
from tests.integration.conftest import Stack, open_stack
from tests.integration.helpers import eventually, register

pytestmark = pytest.mark.integration


async def test_the_standby_set_takes_over_relays_and_projector(
    stack: Stack, database_url: str, fresh_nats_url: str
) -> None:
    first = await register(stack.customer, "Before", "before@example.com")
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=first.result.aggregate_id, wait_for=first.result.consistency_token
        ),
        timeout=20,
    )
    async with open_stack(
        database_url, fresh_nats_url, signing_key=stack.deployment.signing_key
    ) as standby:
        relay = standby.hosts["customer"].parts["relay"]
        projector = standby.hosts["timeline"].parts["projector"]
        assert not relay.active.is_set()  # the first set holds the locks
        assert not projector.active.is_set()
        await stop_hosts(stack.hosts)  # the active set goes

        async def taken_over() -> bool:
            return bool(relay.active.is_set() and projector.active.is_set())

        await eventually(taken_over, timeout=30, what="the standby set to take the locks")
        reply = await register(standby.customer, "After", "after@example.com")
        shown = await standby.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
            ),
            timeout=20,
        )
        assert [e.type for e in shown.entries] == ["customer.registered"]
