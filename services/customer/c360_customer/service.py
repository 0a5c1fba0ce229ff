"""Composition root of the customer service: settings -> application, relay, gRPC host."""

from __future__ import annotations

import os

from c360_customer.api import servicer_registration
from c360_customer.application import CustomerApplication
from c360_customer.contract import CONTRACT
from c360_platform import rpc
from c360_platform.config import Settings
from c360_platform.eventlog import publish_events
from c360_platform.pgstore import open_application


def build(settings: Settings) -> rpc.ServiceHost:
    app = open_application(CustomerApplication, settings)
    # The country of phone numbers written without a country code, if requests name none.
    app.default_region = os.environ.get("C360_DEFAULT_REGION", "").strip().upper()
    host = rpc.ServiceHost.for_settings(settings)
    host.add(*servicer_registration(app))
    # The outbox relay, and the catch-up read (ReadEvents) of the store beside the API.
    publish_events(host, app, CONTRACT, settings)
    return host
