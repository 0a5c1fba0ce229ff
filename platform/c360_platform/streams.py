"""JetStream stream configuration in one place, created or updated idempotently at start."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import NotFoundError


@dataclass(frozen=True)
class StreamSettings:
    """How the event stream is kept. Ages in seconds; 0 means no limit."""

    name: str = "C360"
    subjects: tuple[str, ...] = ("c360.>",)
    max_age: float = 0.0
    max_bytes: int = -1
    duplicate_window: float = 600.0
    replicas: int = 1
    batched: bool = True
    """Allow fast-ingest batches (`allow_batched`) where the server has them (JetStream API
    level 4: 2.14+). Every c360 stream allows them; the outbox relays publish their backlogs
    to the event stream that way."""
    sources: tuple[tuple[str, str], ...] = ()
    """Streams it copies, each with the subjects it takes (a feed has no subjects of its own)."""

    @classmethod
    def from_env(cls) -> StreamSettings:
        return cls(
            name=os.environ.get("C360_STREAM_NAME", "C360"),
            max_age=float(os.environ.get("C360_STREAM_MAX_AGE_SECONDS", "0")),
            max_bytes=int(os.environ.get("C360_STREAM_MAX_BYTES", "-1")),
            duplicate_window=float(os.environ.get("C360_STREAM_DUPLICATE_WINDOW_SECONDS", "600")),
            replicas=int(os.environ.get("C360_STREAM_REPLICAS", "1")),
        )

    @classmethod
    def inbound(cls) -> StreamSettings:
        """The ERP stream (erp.>). It is the only record c360 has of ERP events (a rebuild
        replays it), so it keeps them without limit unless C360_ERP_STREAM_MAX_AGE_SECONDS
        says otherwise."""
        return cls(
            name="ERP",
            subjects=("erp.>",),
            max_age=float(os.environ.get("C360_ERP_STREAM_MAX_AGE_SECONDS", "0")),
            duplicate_window=float(os.environ.get("C360_STREAM_DUPLICATE_WINDOW_SECONDS", "600")),
            replicas=int(os.environ.get("C360_STREAM_REPLICAS", "1")),
        )

    @classmethod
    def partner(cls, name: str, subjects: tuple[str, ...]) -> StreamSettings:
        """What a service's partner publishes back (delivery reports), kept like ERP's."""
        return cls(
            name=name,
            subjects=subjects,
            duplicate_window=float(os.environ.get("C360_STREAM_DUPLICATE_WINDOW_SECONDS", "600")),
            replicas=int(os.environ.get("C360_STREAM_REPLICAS", "1")),
        )

    @classmethod
    def feed(cls, name: str, subjects: str) -> StreamSettings:
        """A copy of the event stream's `subjects` (`c360.marketing.>`), kept as long as the
        event stream keeps them: what an outside system may read is in a stream of its own,
        so it reads nothing else, and touches no consumer of c360's or of another system."""
        events = cls.from_env()
        return dataclasses.replace(
            events, name=name, subjects=(), sources=((events.name, subjects),), batched=False
        )

    @classmethod
    def dead_letters(cls) -> StreamSettings:
        """Messages a consumer could not take (deadletter.<consumer>.<subject>), kept until
        replayed or deleted."""
        return cls(
            name="DEADLETTER",
            subjects=("deadletter.>",),
            replicas=int(os.environ.get("C360_STREAM_REPLICAS", "1")),
        )

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects) or None,
            sources=[StreamSource(name=n, filter_subject=s) for n, s in self.sources] or None,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age or None,
            max_bytes=self.max_bytes,
            # JetStream refuses a duplicate window longer than the retention.
            duplicate_window=min(self.duplicate_window, self.max_age or self.duplicate_window),
            num_replicas=self.replicas,
            allow_batched=True if self.batched else None,
        )


FAST_INGEST_API_LEVEL = 4
"""The JetStream API level of the servers that take fast-ingest batches (2.14)."""


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> StreamConfig:
    """Create the stream, or update its limits in place when they differ (stored messages
    are kept); a stream already as configured is left alone, so a user who may only look
    streams up passes here once the admin prepared them. Returns the stream's configuration
    as the server has it."""
    wanted = settings.config()
    if settings.batched and not await _takes_fast_batches(js):
        wanted = dataclasses.replace(wanted, allow_batched=None)
    try:
        info = await js.stream_info(settings.name)
        if _same(info.config, wanted):
            return info.config
    except NotFoundError:
        try:
            return (await js.add_stream(config=wanted)).config
        except Exception as exc:
            # Another replica created it between our look and our add; update below.
            try:
                await js.stream_info(settings.name)
            except NotFoundError:
                raise exc from None
    return (await js.update_stream(config=wanted)).config


async def _takes_fast_batches(js: JetStreamContext) -> bool:
    level = (await js.account_info()).api.level
    return level is not None and level >= FAST_INGEST_API_LEVEL


def _same(current: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether the settings c360 manages are as wanted (unset and the server's default of
    each compare equal)."""
    defaults: dict[str, object] = {
        "subjects": [],
        "max_age": 0,
        "max_bytes": -1,
        "duplicate_window": 120,
        "num_replicas": 1,
    }

    def norm(config: StreamConfig, name: str) -> object:
        value = getattr(config, name)
        if value is None:
            value = defaults.get(name)
        return sorted(value) if isinstance(value, list) else value

    def sources(config: StreamConfig) -> list[tuple[str, str | None]]:
        return sorted((s.name, s.filter_subject) for s in config.sources or ())

    names = ("subjects", "max_age", "max_bytes", "duplicate_window", "num_replicas", "storage")
    return (
        all(norm(current, n) == norm(wanted, n) for n in names)
        and sources(current) == sources(wanted)
        and bool(current.allow_batched) == bool(wanted.allow_batched)
    )


RECONNECT_WAIT = 0.5
"""Seconds between a c360 client's attempts to reconnect to NATS (nats-py's default is 2)."""
