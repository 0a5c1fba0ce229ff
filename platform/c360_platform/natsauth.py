"""NATS users and subject permissions per role, for the embedded nats-server's configuration.

Roles: `admin` (operators and tools: no limits), `erp` (reads c360.> events on consumers of
its own, publishes only on erp.>), one per partner a service declares (reads that service's
events from a feed stream of their own, publishes only on its own subjects), and one per
registered service, as its spec says: a business service publishes only on c360.<service>.>
and touches only the durable consumers it declares; the timeline reads c360.> and erp.> and
writes dead letters. Passwords
are generated once and kept in a file only the owner can read; each role connects with a URL
carrying its credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from c360_platform import registry
from c360_platform.credentials import load_passwords as load_passwords
from c360_platform.credentials import url_for as url_for
from c360_platform.envelope import SUBJECT_ROOT
from c360_platform.streams import StreamSettings

ADMIN = "admin"
ERP = "erp"
ERP_DEAD_LETTERS = "erp"
"""The one consumer of the dead-letter stream the ERP may have: its own messages' letters."""


def erp_dead_letter_subject() -> str:
    """The dead letters of what ERP published (`deadletter.<consumer>.erp.>`), the filter of
    its consumer `ERP_DEAD_LETTERS`."""
    root = StreamSettings.dead_letters().subjects[0].removesuffix(">")
    return f"{root}*.{StreamSettings.inbound().subjects[0]}"


@dataclass(frozen=True)
class Permissions:
    """What a role may publish (requests to the JetStream API included) and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()


def _api(*parts: str) -> str:
    return "$JS.API." + ".".join(parts)


def _consumers_of(stream: str, durable: str = "*") -> tuple[str, ...]:
    """Create, bind, fetch from, reset, delete and acknowledge the consumer `durable` of
    `stream` (any of its consumers with "*")."""
    return (
        _api("CONSUMER", "*", stream, durable),
        _api("CONSUMER", "*", stream, durable, ">"),  # created with its filter in the subject
        _api("CONSUMER", "DURABLE", "CREATE", stream, durable),
        _api("CONSUMER", "MSG", "NEXT", stream, durable),
        f"$JS.ACK.{stream}.{durable}.>",
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


def streams() -> list[StreamSettings]:
    """Every stream of this deployment: the events, ERP's, the dead letters, and for each
    partner a service declares, what it publishes and the feed of events it reads."""
    return [
        StreamSettings.from_env(),
        StreamSettings.inbound(),
        StreamSettings.dead_letters(),
        *(StreamSettings.partner(p.stream, p.subjects) for p in _partners().values()),
        *(feed_of(owner) for owner in _partners()),
    ]


async def prepare_streams(admin_url: str) -> list[str]:
    """Create c360's streams, or bring their settings up to date, as the admin (services
    may only look them up); their names."""
    import nats

    from c360_platform.streams import ensure_stream

    nc = await nats.connect(admin_url, connect_timeout=10)
    try:
        js = nc.jetstream()
        every = streams()
        for stream in every:
            await ensure_stream(js, stream)
        return [s.name for s in every]
    finally:
        await nc.close()


def _stream(name: str) -> StreamSettings:
    for settings in streams():
        if settings.name == name:
            return settings
    raise ValueError(f"no stream {name!r} (known: {', '.join(s.name for s in streams())})")


def _partners() -> dict[str, registry.Partner]:
    """The partners the services declare, by the name of the service."""
    return {name: s.partner for name, s in registry.services().items() if s.partner}


def feed_of(owner: str) -> StreamSettings:
    """The stream a service's partner reads: a copy of that service's events only
    (`C360_MARKETING`: c360.marketing.>)."""
    events = StreamSettings.from_env().name
    return StreamSettings.feed(
        f"{events}_{owner.upper().replace('-', '_')}", f"{SUBJECT_ROOT}.{owner}.>"
    )


def _integrator(
    role: str,
    publish_on: tuple[str, ...],
    inbound: str,
    reads: StreamSettings,
    *,
    deny: tuple[registry.Durable, ...] = (),
) -> Permissions:
    """An outside system: publishes only on its own subjects (stream `inbound`), reads the
    stream `reads` through consumers of its own (never the durables in `deny`)."""
    events = reads.name
    return Permissions(
        publish=(
            *publish_on,
            _api("INFO"),
            _api("STREAM", "INFO", events),
            _api("STREAM", "INFO", inbound),
            _api("STREAM", "MSG", "GET", events),
            *_consumers_of(events),
        ),
        subscribe=(*(s for _, s in reads.sources), *reads.subjects, f"{inbox_prefix(role)}.>"),
        deny_publish=tuple(s for d in deny for s in _consumers_of(d.stream, d.name)),
    )


def permissions_for(role: str) -> Permissions | None:
    """The permissions of a role; None for admin (no limits). Any other role is a service of
    the registry, whose spec says what it publishes, consumes and dead-letters."""
    events = StreamSettings.from_env()
    if role == ADMIN:
        return None
    if role == ERP:
        # ERP reads every event, on consumers of its own: the services' are not its to touch.
        mine = tuple(
            d for s in registry.services().values() for d in s.consumes if d.stream == events.name
        )
        rules = _integrator(role, StreamSettings.inbound().subjects, "ERP", events, deny=mine)
        # And the letters of its own messages that a consumer refused, with the reasons:
        # through one consumer whose filter is in the subject that creates it (the server
        # checks it against the consumer's), so none reads another system's letters.
        letters, name = StreamSettings.dead_letters().name, ERP_DEAD_LETTERS
        own = (
            _api("STREAM", "INFO", letters),
            _api("CONSUMER", "CREATE", letters, name, erp_dead_letter_subject()),
            *(_api("CONSUMER", verb, letters, name) for verb in ("INFO", "DELETE")),
            _api("CONSUMER", "MSG", "NEXT", letters, name),
            f"$JS.ACK.{letters}.{name}.>",
        )
        return replace(rules, publish=(*rules.publish, *own))
    for owner, partner in _partners().items():
        if partner.role == role:
            return _integrator(role, partner.subjects, partner.stream, feed_of(owner))
    spec = registry.service(role)
    publish: list[str] = [_api("INFO")]
    subscribe: list[str] = [f"{inbox_prefix(role)}.>"]
    if spec.publishes_events:
        publish += [f"{SUBJECT_ROOT}.{spec.name}.>", *_ensure(events.name)]
    for durable in spec.consumes:
        publish += [*_ensure(durable.stream), *_consumers_of(durable.stream, durable.name)]
        if durable.stream == events.name:
            publish.append(_api("STREAM", "MSG", "GET", events.name))
        subscribe += _stream(durable.stream).subjects
    if spec.dead_letters:
        dead = StreamSettings.dead_letters()
        publish += [f"{dead.subjects[0].removesuffix('>')}{spec.name}.>", *_ensure(dead.name)]
    return Permissions(
        publish=tuple(dict.fromkeys(publish)), subscribe=tuple(dict.fromkeys(subscribe))
    )


def roles() -> list[str]:
    """Every role of this deployment: the operators', ERP's and one per registered service."""
    partners = [p.role for p in _partners().values()]
    return list(dict.fromkeys([ADMIN, ERP, *registry.services(), *partners]))


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
