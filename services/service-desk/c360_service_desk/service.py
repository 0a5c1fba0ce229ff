"""Composition root of the service-desk service: settings -> application, relay, gRPC host."""

from __future__ import annotations

from c360_platform import rpc
from c360_platform.config import Settings
from c360_platform.context import ContextReader
from c360_platform.eventlog import publish_events
from c360_platform.relay import OutboxRelay
from c360_platform.store import ensure_schema, postgres_env, schema_for
from c360_platform.telemetry import configure
from c360_service_desk.api import SERVICE_NAME, ServiceDeskServicer, register
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import TicketContract

SOURCE = ServiceDeskApplication.source
DEFAULT_PORT = 50053


def build(settings: Settings) -> tuple[rpc.ServiceHost, ServiceDeskApplication, OutboxRelay]:
    configure(SOURCE)
    ensure_schema(settings.postgres_url, schema_for(SOURCE))
    app = ServiceDeskApplication(env=postgres_env(settings.postgres_url, schema_for(SOURCE)))
    context = ContextReader(settings.timeline_addr)
    host = rpc.ServiceHost(SOURCE, settings.grpc_port, settings.grpc_host)
    host.add(SERVICE_NAME, register(ServiceDeskServicer(app, context)))
    host.on_close.append(context.close)
    # The outbox relay, and the catch-up read (ReadEvents) of the store beside the API.
    relay = publish_events(host, app, TicketContract(), settings)
    return host, app, relay
