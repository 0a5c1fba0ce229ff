"""Composition root of the service-desk service: settings -> application, relay, gRPC host."""

from __future__ import annotations

from c360_platform import rpc
from c360_platform.config import Settings
from c360_platform.context import ContextReader
from c360_platform.eventlog import publish_events
from c360_platform.pgstore import open_application
from c360_service_desk.api import servicer_registration
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT


def build(settings: Settings) -> rpc.ServiceHost:
    app = open_application(ServiceDeskApplication, settings)
    context = ContextReader(settings.timeline_addr, token=settings.token)
    host = rpc.ServiceHost.for_settings(settings)
    host.add(*servicer_registration(app, context))
    host.on_close.append(context.close)
    # The outbox relay, and the catch-up read (ReadEvents) of the store beside the API.
    publish_events(host, app, CONTRACT, settings)
    return host
