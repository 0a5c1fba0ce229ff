"""Composition root of the timeline service: read model, projector and query API."""

from __future__ import annotations

from typing import Any

from c360.timeline.v1 import timeline_service_pb2 as api
from c360.timeline.v1 import timeline_service_pb2_grpc as api_grpc
from c360_platform import rpc
from c360_platform.catchup import SourceDirectory
from c360_platform.config import Settings
from c360_platform.datakeys import DataKeys
from c360_platform.notify import Notifications
from c360_platform.pgpool import CHECKOUT_TIMEOUT, PatientAsyncPool
from c360_platform.pgstore import use_json_loads
from c360_timeline.projector import Projector
from c360_timeline.query import PAGE_OPTIONS, TimelineServicer
from c360_timeline.readmodel import KEY_CACHE_SECONDS, NOTIFY_CHANNEL, open_read_model

SERVICE_NAME = api.DESCRIPTOR.services_by_name["TimelineService"].full_name
READ_CONNECTIONS = 10
"""Connections of the query API's pool (profiles, searches, watches, changed profiles)."""
PAGE_CONNECTIONS = 4
"""Connections GetTimeline reads its pages on, at most: a page costs PostgreSQL some 0.2 ms and
the timeline's interpreter about five times that, so one process keeps one or two busy (four
at 1 ms each would serve some 4,000 pages/s, past what one interpreter makes); more are only
more backends for PostgreSQL to hold, per process of each deployment. While each call's page
was planned anew (before PAGE_OPTIONS planned each form once), more also ran more plannings at
once on the cores the services share: 16 calls in flight on 2 cores, 100,000 entries stored
(ten a customer), p99 42-132 ms and a longest call of 0.4-1.1 s with 10 connections, 30-34
ms and 0.3-0.65 s with 6, 26-29 ms and 0.08-0.67 s with 4. Planned once, 10 and 4 do the same
there (p99 23-26 ms, 1,130-1,160 pages/s)."""


def build(settings: Settings) -> rpc.ServiceHost:
    view = open_read_model(settings.postgres_url)
    # The customers' data keys, asked of the service that holds them: the read model keeps
    # what events sealed sealed, makes its search columns and reveals on the way out with them.
    keys = DataKeys(settings.services, settings.token, ttl=KEY_CACHE_SECONDS)
    view.keys = keys
    # The services whose stores fill in what the stream no longer holds.
    directory = SourceDirectory(settings.services, exclude={settings.service}, token=settings.token)
    projector = Projector(
        view, postgres_url=settings.postgres_url, nats_url=settings.nats_url, directory=directory
    )
    pool = read_pool(settings.postgres_url)
    pages = read_pool(settings.postgres_url, size=PAGE_CONNECTIONS, options=PAGE_OPTIONS)
    # One LISTEN for the whole process: watches and waits are woken by the projector's commits.
    notifications = Notifications(settings.postgres_url, NOTIFY_CHANNEL)
    servicer = TimelineServicer(
        pool, projector, notifications=notifications, keys=keys, pages=pages
    )
    host = rpc.ServiceHost.for_settings(settings)

    def add(server: Any) -> None:
        api_grpc.add_TimelineServiceServicer_to_server(servicer, server)

    host.add(SERVICE_NAME, add, servicer)

    host.on_start.append(pool.open)
    host.on_start.append(pages.open)
    host.background.append(projector.run)
    host.background.append(notifications.run)
    host.on_close.append(pool.close)
    host.on_close.append(pages.close)

    host.on_close.append(keys.aclose)
    host.parts.update(projector=projector, view=view, notifications=notifications)
    return host


def read_pool(postgres_url: str, size: int = READ_CONNECTIONS, **connect: Any) -> PatientAsyncPool:
    """A pool of the query API's, of `size` connections at most (`connect`: more connection
    parameters)."""
    return PatientAsyncPool(
        postgres_url,
        min_size=1,
        max_size=size,
        open=False,
        # With PostgreSQL down a read answers UNAVAILABLE within a second; a connection broken
        # by its restart is found on checkout and replaced, not handed to a query.
        timeout=CHECKOUT_TIMEOUT,
        check=PatientAsyncPool.check_if_disturbed,
        # Every read is one statement or a few that need no common snapshot: no BEGIN and
        # COMMIT around them.
        kwargs={"autocommit": True, **connect},
        # json and jsonb columns (entries' details, profiles) read by orjson where it reads
        # what the standard decoder reads (`json_loads`).
        configure=_reads_json,
    )


async def _reads_json(conn: Any) -> None:
    use_json_loads(conn)
