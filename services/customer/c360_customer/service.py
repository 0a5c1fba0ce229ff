"""Composition root of the customer service: settings -> application, relay, gRPC host."""

from __future__ import annotations

from c360_customer.api import SERVICE_NAME, CustomerServicer, register
from c360_customer.application import CustomerApplication
from c360_customer.contract import CustomerContract
from c360_platform import rpc
from c360_platform.config import Settings
from c360_platform.eventlog import publish_events
from c360_platform.relay import OutboxRelay
from c360_platform.store import ensure_schema, postgres_env
from c360_platform.telemetry import configure

SOURCE = "customer"
DEFAULT_PORT = 50051


def build(settings: Settings) -> tuple[rpc.ServiceHost, CustomerApplication, OutboxRelay]:
    configure(SOURCE)
    ensure_schema(settings.postgres_url, SOURCE)
    app = CustomerApplication(env=postgres_env(settings.postgres_url, SOURCE))
    host = rpc.ServiceHost(SOURCE, settings.grpc_port, settings.grpc_host)
    host.add(SERVICE_NAME, register(CustomerServicer(app)))
    # The outbox relay, and the catch-up read (ReadEvents) of the store beside the API.
    relay = publish_events(host, app, CustomerContract(), settings)
    return host, app, relay
