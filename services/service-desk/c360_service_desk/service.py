"""Composition root of the service-desk service: settings -> application, relay, gRPC host."""

from __future__ import annotations

import asyncio
import logging

from c360_platform import rpc
from c360_platform.commands import blocking
from c360_platform.config import Settings
from c360_platform.context import ContextReader
from c360_platform.datakeys import DataKeys
from c360_platform.eventlog import publish_events
from c360_platform.leader import wait_at_most
from c360_platform.pgstore import open_application
from c360_service_desk.api import servicer_registration
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT

SLA_CHECK_SECONDS = 5.0
"""How often the scheduler looks for SLA warnings and breaches that fell due. The events carry
the moment they fell due, not the moment the scheduler ran, so this only delays them."""

_log = logging.getLogger(__name__)


def sla_scheduler(app: ServiceDeskApplication, every: float = SLA_CHECK_SECONDS) -> rpc.Background:
    """The background task writing SLA warnings and breaches as they fall due."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                written = await blocking(app.check_slas)
                if written:
                    _log.info("SLA scheduler wrote %d warning or breach events", written)
            except Exception:
                _log.exception("SLA scheduler round failed; retrying next round")
            await wait_at_most(stop.wait(), every)

    return run


def build(settings: Settings) -> rpc.ServiceHost:
    # The customers' keys, from the service that holds them: the desk's free texts are sealed
    # with them (and revealed), so a customer's erasure covers its tickets too.
    keys = DataKeys(settings.services, settings.token)
    app = open_application(ServiceDeskApplication, settings, keys=keys)
    context = ContextReader(settings.timeline_addr, token=settings.token)
    host = rpc.ServiceHost.for_settings(settings)
    host.add(*servicer_registration(app, context))
    host.on_close.append(context.close)

    host.on_close.append(keys.aclose)
    # The outbox relay, and the catch-up read (ReadEvents) of the store beside the API.
    publish_events(host, app, CONTRACT, settings)
    host.background.append(sla_scheduler(app))
    return host
