"""Composition root of the marketing service: settings -> stores, feeds, relay, gRPC host."""

from __future__ import annotations

from dataclasses import replace

from c360_marketing.api import MarketingServicer, servicer_registration
from c360_marketing.application import Marketing, PeopleApplication, PlanningApplication
from c360_marketing.contract import CONTRACT
from c360_marketing.follower import DeliveryReports, ProfileFollower
from c360_marketing.spec import SPEC
from c360_platform import rpc
from c360_platform.config import Settings
from c360_platform.datakeys import DataKeys
from c360_platform.eventlog import publish_events
from c360_platform.pgstore import open_application
from c360_platform.store import utc_now


def build(settings: Settings) -> rpc.ServiceHost:
    # The customers' keys, from the service that holds them: the addresses touches went to
    # and agents' call notes are sealed with them (and revealed).
    keys = DataKeys(settings.services, settings.token)
    people = open_application(PeopleApplication, settings, keys=keys)
    plans_settings = replace(settings, service=PlanningApplication.source)
    plans = open_application(PlanningApplication, plans_settings, keys=keys)
    marketing = Marketing(plans, people, utc_now)
    follower = ProfileFollower(marketing, settings.timeline_addr, token=settings.token)
    host = rpc.ServiceHost.for_settings(settings)
    servicer = MarketingServicer(
        marketing,
        follower.catch_up,
        settings.services.get("sales", ""),
        token=settings.token,
        nudge=follower.nudge,
    )
    host.add(*servicer_registration(servicer))
    host.on_close.append(servicer.close)

    host.on_close.append(keys.aclose)
    host.background.append(follower.run)
    host.on_close.append(follower.close)
    assert SPEC.partner is not None
    reports = DeliveryReports(
        marketing,
        SPEC.partner,
        settings.nats_url,
        settings.services.get("customer", ""),
        token=settings.token,
    )
    host.background.append(reports.run)
    host.parts.update(marketing=marketing, follower=follower, reports=reports, plans=plans)
    # The outbox relay of the people store (memberships, touches), and its catch-up read;
    # short ids typed back are looked up in the plans' store too (campaigns, lead lists).
    publish_events(host, people, CONTRACT, settings, also=[plans])
    return host
