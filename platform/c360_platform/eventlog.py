"""The catch-up read (EventLogService.ReadEvents) every business service serves from its store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from c360.events.v1 import event_log_pb2 as api
from c360.events.v1 import event_log_pb2_grpc as api_grpc
from c360_platform import rpc
from c360_platform.auth import Role, requires
from c360_platform.config import Settings
from c360_platform.relay import Contract, OutboxRelay, StoredEnvelope
from c360_platform.store import MIN_PREFIX, ServiceApplication, kind_of, prefix_range
from c360_platform.validation import Violations

SERVICE_NAME = api.DESCRIPTOR.services_by_name["EventLogService"].full_name
PAGE_SIZE = 500
MAX_RESOLVED = 100


class EventLogServicer(api_grpc.EventLogServiceServicer):
    """Streams a service's stored events after a position, packed as its relay publishes them."""

    def __init__(
        self,
        app: ServiceApplication,
        contract: Contract,
        page_size: int = PAGE_SIZE,
        *,
        also: Sequence[ServiceApplication] = (),
    ) -> None:
        self.app = app
        self.contract = contract
        self.page_size = page_size
        self.stores = (app, *also)
        """Where ResolveIds looks: the published store, and the service's other stores (a
        short id of any aggregate a user sees, published or not: marketing's campaigns)."""

    def _page(self, after: int, limit: int, head: int) -> list[Any]:
        rows = self.app.event_recorder.select_with_metadata(after, limit)
        mapper = self.app.publishing_mapper
        return [
            StoredEnvelope(self.app, self.contract, n, m, mapper).pack()
            for n, m in rows
            if n.id <= head
        ]

    @requires(Role.INTEGRATION, Role.SERVICE, Role.OPERATOR)
    async def ReadEvents(
        self, request: api.ReadEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api.ReadEventsResponse]:
        head = await asyncio.to_thread(self.app.recorder.max_notification_id) or 0
        after = request.after_position
        remaining = request.limit or None
        sent = False
        while after < head and (remaining is None or remaining > 0):
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            page = await asyncio.to_thread(self._page, after, size, head)
            if not page:
                break
            yield api.ReadEventsResponse(source=self.app.source, head_position=head, envelopes=page)
            sent = True
            after = page[-1].source_position
            if remaining is not None:
                remaining -= len(page)
        if not sent:
            yield api.ReadEventsResponse(source=self.app.source, head_position=head)

    async def ResolveIds(
        self, request: api.ResolveIdsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api.ResolveIdsResponse:
        violations = Violations()
        digits = request.prefix.replace("-", "")
        if len(digits) < MIN_PREFIX:
            violations.add("prefix", f"must have at least {MIN_PREFIX} hexadecimal digits")
        try:
            low, high = prefix_range(request.prefix)
        except ValueError as exc:
            violations.add("prefix", str(exc))
        if request.limit > MAX_RESOLVED:
            violations.add("limit", f"must be at most {MAX_RESOLVED}")
        violations.check()
        limit = request.limit or 10
        # Kinds are filtered after the read: ask for more than `limit` when filtering.
        wanted = limit if not request.kind else 1000
        ids = []
        for store in self.stores:
            found = await asyncio.to_thread(store.event_recorder.ids_in_range, low, high, wanted)
            for aggregate_id, topic in found:
                kind = kind_of(topic)
                if not request.kind or kind == request.kind:
                    ids.append(api.ResolvedId(id=str(aggregate_id), kind=kind))
        return api.ResolveIdsResponse(ids=ids[:limit])


def serve_event_log(
    host: rpc.ServiceHost,
    app: ServiceApplication,
    contract: Contract,
    also: Sequence[ServiceApplication] = (),
) -> None:
    """Offer the catch-up read of `app`'s store on `host` (health reports it by name), and
    the resolution of short ids in it and in the stores `also` names."""
    servicer = EventLogServicer(app, contract, also=also)

    def add(server: grpc.aio.Server) -> None:
        api_grpc.add_EventLogServiceServicer_to_server(servicer, server)

    host.add(SERVICE_NAME, add, servicer)


def publish_events(
    host: rpc.ServiceHost,
    app: ServiceApplication,
    contract: Contract,
    settings: Settings,
    *,
    also: Sequence[ServiceApplication] = (),
) -> OutboxRelay:
    """Everything a business service does with its events: the outbox relay as a background
    task of `host`, and the catch-up read beside its API (short ids resolved in `app`'s store
    and in those of `also`, the service's stores that publish nothing)."""
    relay = OutboxRelay(
        app, contract, postgres_url=settings.postgres_url, nats_url=settings.nats_url, pool=True
    )
    if not settings.relay_apart:  # else `c360-service NAME --relay` runs it (relayd.py)
        host.background.append(relay.run)
    host.parts.update(app=app, relay=relay)
    serve_event_log(host, app, contract, also)
    return relay
