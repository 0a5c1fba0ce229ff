"""Composition root of the sales service: settings -> application, relay, ERP follower,
contract renewals, forgotten customers' leads, quote expiry, gRPC host."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable

from c360_platform import context as timeline_context
from c360_platform import rpc
from c360_platform.commands import blocking
from c360_platform.config import Settings
from c360_platform.context import ContextReader
from c360_platform.datakeys import DataKeys
from c360_platform.errors import NotFound, PreconditionFailed
from c360_platform.eventlog import publish_events
from c360_platform.leader import sleep_or_stop
from c360_platform.pgstore import open_application
from c360_sales.api import servicer_registration
from c360_sales.application import SalesApplication
from c360_sales.contract import CONTRACT
from c360_sales.customers import CUSTOMER_SERVICE, GrpcCustomerRegistry, TimelineSearch
from c360_sales.erp_orders import ErpOrderFollower
from c360_sales.forgotten import ForgottenCustomers
from c360_sales.renewals import ContractRenewals

ROUND_SECONDS = 600.0
"""How often quotes past their date expire and customers' classes are recorded (and once at
start). Both follow dates (days), so ten minutes late is soon enough."""
_log = logging.getLogger(__name__)


def build(settings: Settings) -> rpc.ServiceHost:
    # The customers' keys, from the service that holds them: what leads, deals and activities
    # say of a customer is sealed with them (and revealed).
    keys = DataKeys(settings.services, settings.token)
    app = open_application(SalesApplication, settings, keys=keys)
    # The country of a lead's phone number written without a country code, if none is named.
    app.default_region = os.environ.get("C360_DEFAULT_REGION", "").strip().upper()
    customers = GrpcCustomerRegistry(
        settings.services.get(CUSTOMER_SERVICE, ""), token=settings.token
    )
    host = rpc.ServiceHost.for_settings(settings)
    search = TimelineSearch(settings.timeline_addr, token=settings.token)
    context = ContextReader(settings.timeline_addr, token=settings.token)
    host.add(*servicer_registration(app, customers, search, context))
    host.on_close.append(customers.close)

    host.on_close.append(keys.aclose)
    host.on_close.append(search.close)
    host.on_close.append(context.close)

    async def owner_of(customer_id: str) -> str:
        """The customer's responsible employee: its owner, else its latest deal's owner."""
        found = await context.read(customer_id)
        if not found.available or found.profile is None:
            return ""
        sales = found.profile.attributes.fields.get("sales")
        deal_owner = sales.struct_value.fields.get("owner_id") if sales else None
        return found.profile.owner_id or (deal_owner.string_value if deal_owner else "")

    async def customer_of(customer_id: str) -> str:
        """The customer an ERP message names, as c360 has it (erp_orders.CustomerOf)."""
        profile = await context.known_profile(customer_id)
        if profile is None:
            raise NotFound(
                f"customer_id: c360 has no customer {customer_id}; send the id of a customer"
                " c360 registered"
            )
        if timeline_context.forgotten(profile):
            raise PreconditionFailed(f"customer {customer_id} is forgotten")
        return profile.merged_into or customer_id

    follower = ErpOrderFollower(app, settings.nats_url, owner_of, customer_of=customer_of)
    host.background.append(follower.run)
    renewals = ContractRenewals(app, settings.nats_url, owner_of)
    host.background.append(renewals.run)
    forgotten = ForgottenCustomers(app, settings.nats_url)
    host.background.append(forgotten.run)
    host.parts.update(erp_follower=follower, renewals=renewals, forgotten_customers=forgotten)

    forgotten_ids: set[str] = set()
    """Customers the timeline said are forgotten (for good: asked once per process)."""

    async def forgotten_of(customers: Iterable[str]) -> set[str]:
        """Of `customers`, those forgotten: nothing new is recorded for them, not even their
        classes (their orders stay, and would classify them)."""
        for customer in set(customers) - forgotten_ids:
            profile = await context.known_profile(customer, grace=0)
            if profile is not None and timeline_context.forgotten(profile):
                forgotten_ids.add(customer)
        return forgotten_ids & set(customers)

    async def expire_quotes(stop: asyncio.Event) -> None:
        """At start and every ROUND_SECONDS: sent quotes past their validity date expire, and
        customers' classes that started or ended are recorded (an event each), but for
        forgotten customers."""
        while not stop.is_set():
            try:
                await blocking(app.expire_quotes)
                changes = await blocking(app.class_changes)
                skip = await forgotten_of(changes) if changes else set()
                await blocking(app.record_classes, changes, skip)
            except Exception:  # another replica's change first, a store hiccup: next round
                _log.warning("quote expiry or reclassification failed; retrying", exc_info=True)
            await sleep_or_stop(stop, ROUND_SECONDS)

    host.background.append(expire_quotes)
    publish_events(host, app, CONTRACT, settings)
    return host
