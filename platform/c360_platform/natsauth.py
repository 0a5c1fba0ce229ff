"""NATS users and subject permissions per role, for the embedded nats-server's configuration.

Roles: `admin` (operators and tools: no limits), `erp` (reads c360.> events, publishes only on
erp.>), one per partner a service declares (reads that service's events, publishes only on its
own subjects), and one per registered service, as its spec says: a business service publishes only
on c360.<service>.>; the timeline reads c360.> and erp.> and writes dead letters. Passwords
are generated once and kept in a file only the owner can read; each role connects with a URL
carrying its credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from c360_platform import registry
from c360_platform.credentials import load_passwords as load_passwords
from c360_platform.credentials import url_for as url_for
from c360_platform.envelope import SUBJECT_ROOT
from c360_platform.streams import StreamSettings

ADMIN = "admin"
ERP = "erp"
PROJECTOR_DURABLES = (registry.TIMELINE,)
"""Durables on the event stream that belong to c360: integrators may not touch them."""


@dataclass(frozen=True)
class Permissions:
    """What a role may publish (requests to the JetStream API included) and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()


def _api(*parts: str) -> str:
    return "$JS.API." + ".".join(parts)


def _consumers_of(stream: str) -> tuple[str, ...]:
    """Create, bind, fetch from, reset, delete and acknowledge consumers on `stream`."""
    return (
        _api("CONSUMER", "*", stream, ">"),
        _api("CONSUMER", "DURABLE", "CREATE", stream, ">"),
        _api("CONSUMER", "MSG", "NEXT", stream, ">"),
        f"$JS.ACK.{stream}.>",
    )


def _ensure(stream: str) -> tuple[str, ...]:
    """Look the stream up at start (streams.ensure_stream); creating it or changing its
    settings is the admin's (`prepare_streams`, run by `c360 up` or a deployment Job)."""
    return (_api("STREAM", "INFO", stream),)


def inbox_prefix(role: str) -> str:
    """Where a role's replies come back: only that role may subscribe there, so no one
    reads another role's JetStream deliveries or API answers."""
    return f"_INBOX_{role}"


def client_options(url: str) -> dict[str, str]:
    """nats.connect keyword arguments for a URL with a role's credentials (its inbox)."""
    user = urlsplit(url).username
    return {"inbox_prefix": inbox_prefix(unquote(user))} if user and user != ADMIN else {}


async def prepare_streams(admin_url: str) -> None:
    """Create c360's streams, or bring their settings up to date, as the admin (services
    may only look them up)."""
    import nats

    from c360_platform.streams import ensure_stream

    nc = await nats.connect(admin_url, connect_timeout=10)
    try:
        js = nc.jetstream()
        for stream in (
            StreamSettings.from_env(),
            StreamSettings.inbound(),
            StreamSettings.dead_letters(),
            *_partner_streams(),
        ):
            await ensure_stream(js, stream)
    finally:
        await nc.close()


def _stream(name: str) -> StreamSettings:
    for settings in (StreamSettings.from_env(), StreamSettings.inbound(), *_partner_streams()):
        if settings.name == name:
            return settings
    raise ValueError(f"no stream {name!r} (known: C360, ERP and the services' partners')")


def _partners() -> dict[str, registry.Partner]:
    """The partners the services declare, by role."""
    return {s.partner.role: s.partner for s in registry.services().values() if s.partner}


def _partner_streams() -> list[StreamSettings]:
    return [StreamSettings.partner(p.stream, p.subjects) for p in _partners().values()]


def _integrator(
    role: str, publish_on: tuple[str, ...], inbound: str, reads: tuple[str, ...]
) -> Permissions:
    """An outside system: publishes only on its own subjects (stream `inbound`), reads the
    event stream through consumers of its own (never the projector's)."""
    events = StreamSettings.from_env().name
    return Permissions(
        publish=(
            *publish_on,
            _api("INFO"),
            _api("STREAM", "INFO", events),
            _api("STREAM", "INFO", inbound),
            _api("STREAM", "MSG", "GET", events),
            *_consumers_of(events),
        ),
        subscribe=(*reads, f"{inbox_prefix(role)}.>"),
        deny_publish=tuple(
            subject
            for durable in PROJECTOR_DURABLES
            for subject in (
                _api("CONSUMER", "*", events, durable),
                _api("CONSUMER", "*", events, durable, ">"),
                _api("CONSUMER", "DURABLE", "CREATE", events, durable),
                _api("CONSUMER", "MSG", "NEXT", events, durable),
                f"$JS.ACK.{events}.{durable}.>",
            )
        ),
    )


def permissions_for(role: str) -> Permissions | None:
    """The permissions of a role; None for admin (no limits). Any other role is a service of
    the registry, whose spec says what it publishes, consumes and dead-letters."""
    events = StreamSettings.from_env().name
    inbound = StreamSettings.inbound()
    replies = f"{inbox_prefix(role)}.>"
    if role == ADMIN:
        return None
    if role == ERP:
        return _integrator(role, (inbound.subjects[0],), inbound.name, (f"{SUBJECT_ROOT}.>",))
    partner = _partners().get(role)
    if partner is not None:
        owner = next(s for s in registry.services().values() if s.partner == partner)
        return _integrator(
            role, partner.subjects, partner.stream, (f"{SUBJECT_ROOT}.{owner.name}.>",)
        )
    spec = registry.service(role)
    publish: list[str] = [_api("INFO")]
    subscribe: list[str] = [replies]
    if spec.publishes_events:
        publish += [f"{SUBJECT_ROOT}.{spec.name}.>", *_ensure(events)]
    for name in spec.consumes:
        stream = _stream(name)
        publish += [*_ensure(stream.name), *_consumers_of(stream.name)]
        if stream.name == events:
            publish.append(_api("STREAM", "MSG", "GET", events))
        subscribe += stream.subjects
    if spec.dead_letters:
        dead = StreamSettings.dead_letters()
        publish += [f"{dead.subjects[0].removesuffix('>')}{spec.name}.>", *_ensure(dead.name)]
    return Permissions(
        publish=tuple(dict.fromkeys(publish)), subscribe=tuple(dict.fromkeys(subscribe))
    )


def roles() -> list[str]:
    """Every role of this deployment: the operators', ERP's and one per registered service."""
    return list(dict.fromkeys([ADMIN, ERP, *registry.services(), *_partners()]))


def _list(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"


def authorization(passwords: Mapping[str, str]) -> str:
    """The nats-server `authorization` block for these roles: clients without one of these
    users are refused."""
    lines = ["authorization {", "  users = ["]
    for role, password in passwords.items():
        entry = f"    {{user: {json.dumps(role)}, password: {json.dumps(password)}"
        rules = permissions_for(role)
        if rules is not None:
            publish = f"allow: {_list(rules.publish)}"
            if rules.deny_publish:
                publish += f", deny: {_list(rules.deny_publish)}"
            entry += (
                f", permissions: {{publish: {{{publish}}},"
                f" subscribe: {{allow: {_list(rules.subscribe)}}}}}"
            )
        lines.append(entry + "}")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
