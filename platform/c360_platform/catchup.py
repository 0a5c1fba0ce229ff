"""Durable subscriptions that never miss an event: the stream, healed from the services' stores.

A `CatchUpConsumer` is a durable JetStream pull consumer plus two pieces of state kept in the
consumer's own metadata (so a subscriber restarted anywhere continues exactly):

- a watermark per source: the highest source position it has handed out (or read past);
- a floor: the stream sequence below which nothing can be missing any more.

The stream loses messages only at its front (limits by age or size, discard old). When the
stream's first sequence has moved past floor + 1, messages this consumer never saw may be gone:
it then reads every source's store after its watermark through the catch-up read
(`EventLogService.ReadEvents`), hands those events out, raises the watermarks, and goes back to
the stream, where it drops every message at or below a watermark. That is the seam: no gap and
no duplicate, and per-source order is kept because both the store and the stream are in log
order. A new durable that starts `from the start` has watermark 0 for every source, so its
first read fills in whatever the stream no longer holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from c360.events.v1 import envelope_pb2
from c360.events.v1 import event_log_pb2 as log_api
from c360.events.v1 import event_log_pb2_grpc as log_grpc
from c360_platform import channels, envelope, subjects
from c360_platform.pull import Puller
from c360_platform.streams import StreamSettings

_log = logging.getLogger(__name__)

EVENT_LOG_SERVICE = log_api.DESCRIPTOR.services_by_name["EventLogService"].full_name
META_ORIGIN = "c360.origin"
META_FLOOR = "c360.floor"
META_WATERMARKS = "c360.watermarks"
_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)]


class CatchUpError(RuntimeError):
    """The subscription cannot continue as asked; the message says what to change."""


# --------------------------------------------------------------------------- where to start


@dataclass(frozen=True)
class StartAt:
    """Where a new durable begins: the first event ever stored, a stream sequence, or a time."""

    kind: str = "start"
    seq: int = 0
    time: datetime | None = None
    handled: int = 0
    """From the start, with the stream's messages up to this sequence handled already (a
    subscriber that replayed them another way, like the timeline's rebuild)."""

    @classmethod
    def beginning(cls, handled: int = 0) -> StartAt:
        return cls("start", handled=handled)

    @classmethod
    def sequence(cls, seq: int) -> StartAt:
        if seq < 1:
            raise CatchUpError("a stream sequence starts at 1; pass --from-seq 1 or more")
        return cls("seq", seq=seq)

    @classmethod
    def moment(cls, at: datetime) -> StartAt:
        return cls("time", time=at.astimezone(UTC))

    @property
    def origin(self) -> str:
        if self.kind == "seq":
            return f"seq:{self.seq}"
        if self.kind == "time" and self.time is not None:
            return f"time:{self.time.isoformat()}"
        return "start"

    def policy(self) -> dict[str, Any]:
        if self.kind == "seq":
            return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self.seq}
        if self.kind == "time" and self.time is not None:
            stamp = self.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": stamp}
        if self.handled:
            return {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": self.handled + 1,
            }
        return {"deliver_policy": DeliverPolicy.ALL}


# --------------------------------------------------------------------------- the stores


class SourceDirectory:
    """Where each source's catch-up read is: the deployment's services, asked (by the standard
    gRPC health check) whether they serve EventLogService. A service's name is its source."""

    def __init__(
        self, services: Mapping[str, str], exclude: Iterable[str] = (), token: str = ""
    ) -> None:
        self.services = dict(services)
        self.token = token
        self.exclude = set(exclude)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = channels.aio_channel(address, self.token, _CHANNEL_OPTIONS)
        return self._channels[address]

    async def sources(self) -> dict[str, str]:
        """{source: address} of every service that offers the catch-up read."""
        found: dict[str, str] = {}
        for name, address in sorted(self.services.items()):
            if name in self.exclude:
                continue
            stub = health_pb2_grpc.HealthStub(self._channel(address))
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=EVENT_LOG_SERVICE), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    continue  # serves no event log: not a source
                raise CatchUpError(
                    f"cannot ask the {name} service at {address} for its events"
                    f" ({exc.code().name}: {exc.details()}); start it, or fix its address"
                ) from None
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise CatchUpError(
                    f"the {name} service at {address} is not serving its events yet; retry"
                )
            found[name] = address
        return found

    async def read(
        self, address: str, after: int
    ) -> AsyncGenerator[log_api.ReadEventsResponse, None]:
        """The pages of ReadEvents after a position, up to the log's head."""
        stub = log_grpc.EventLogServiceStub(self._channel(address))
        call = stub.ReadEvents(log_api.ReadEventsRequest(after_position=after))
        try:
            async for page in call:
                yield page
        except grpc.aio.AioRpcError as exc:
            raise CatchUpError(
                f"reading events from {address} failed ({exc.code().name}: {exc.details()});"
                " retry when the service is back"
            ) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()


# --------------------------------------------------------------------------- the consumer


@dataclass(frozen=True)
class Event:
    """One event to hand out; stream_seq is 0 when it was read from its source's store."""

    envelope: envelope_pb2.Envelope
    subject: str
    stream_seq: int = 0


@dataclass
class Batch:
    """Events to hand out, in order, and the messages to acknowledge once they are handled
    (duplicates below a watermark included). `undecodable` messages are not envelopes."""

    events: list[Event] = field(default_factory=list)
    msgs: list[Msg] = field(default_factory=list)
    undecodable: list[Msg] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.msgs) + len(self.undecodable)


def _seq(msg: Msg) -> int:
    """The message's stream sequence, read from its ack subject: `$JS.ACK.<stream>.<consumer>.
    <delivered>.<stream seq>...` (9 tokens), or with a domain and an account hash before the
    stream (11 or more). nats-py's `metadata` gives the same, and builds all the rest as well
    (a time, two dataclasses) at every message."""
    tokens = (msg.reply or "").split(".", 8)
    if tokens[:2] == ["$JS", "ACK"] and len(tokens) == 9:
        if "." not in tokens[8]:
            return int(tokens[5])
        return int(tokens[7])
    return int(msg.metadata.sequence.stream)


class CatchUpConsumer:
    """A durable pull consumer on one stream and subject pattern that heals gaps from stores.

    Use one process per durable (a second one would compete for messages and break order).
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: StreamSettings,
        durable: str,
        subject: str,
        directory: SourceDirectory,
        *,
        batch_size: int = 256,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        warn: Callable[[str], None] | None = None,
        batches_in_flight: int = 1,
    ) -> None:
        self.js = js
        self.stream = stream
        self.durable = durable
        self.subject = subjects.check_pattern(subject)
        self.directory = directory
        self.batch_size = batch_size
        self.batches_in_flight = batches_in_flight
        """Batches the durable delivers before the first is acknowledged (when it is made).
        One keeps order through a redelivery; two let a caller fetch the next batch while it
        handles one, for a caller that starts over on any failure (a rebuild)."""
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.warn = warn or _log.warning
        self.config: ConsumerConfig | None = None
        self.sub: Puller | None = None
        self.origin = "start"
        self.floor = 0
        self.watermarks: dict[str, int] = {}
        self.created = False
        self._fill: AsyncGenerator[Batch, None] | None = None
        self._rewind = False
        self._warned: set[str] = set()

    # -- state

    def watermark(self, source: str) -> int | None:
        """The source's watermark; unknown (None) for a source never seen by a durable that
        did not start from the beginning."""
        if source in self.watermarks:
            return self.watermarks[source]
        return 0 if self.origin == "start" else None

    def metadata(self) -> dict[str, str]:
        return {
            META_ORIGIN: self.origin,
            META_FLOOR: str(self.floor),
            META_WATERMARKS: json.dumps(self.watermarks, sort_keys=True),
        }

    def _load(self, info: ConsumerInfo) -> None:
        meta = info.config.metadata or {}
        self.origin = meta.get(META_ORIGIN, "start")
        try:
            self.floor = int(meta.get(META_FLOOR, "0"))
            marks = json.loads(meta.get(META_WATERMARKS, "{}"))
        except ValueError:
            raise CatchUpError(
                f"durable {self.durable} has unreadable c360 metadata; delete it and start anew"
            ) from None
        self.watermarks = {str(k): int(v) for k, v in marks.items()}

    # -- lifecycle

    async def open(
        self, start: StartAt | None = None, watermarks: Mapping[str, int] | None = None
    ) -> bool:
        """Bind to the durable, creating it at `start` if it does not exist. An existing one
        continues after its last acknowledged message at once (its unacknowledged ones come
        again first). `watermarks`, when given, replace the stored ones (a consumer that keeps
        its own, like the timeline's tracking table). Returns True if the durable was created."""
        try:
            info = await self.js.consumer_info(self.stream.name, self.durable)
        except NotFoundError:
            info = None
        if info is None:
            if start is None:
                raise CatchUpError(
                    f"durable {self.durable} does not exist yet; say where it starts:"
                    " --from-start, --from-seq N or --from-time T"
                )
            self.origin, self.floor, self.watermarks = start.origin, start.handled, {}
            if start.kind == "seq":
                self.floor = start.seq - 1
            config = ConsumerConfig(
                durable_name=self.durable,
                # A batch is handled in order and acknowledged at once: its last message
                # acknowledges it all (durables made before this keep one ack per message).
                ack_policy=AckPolicy.ALL,
                ack_wait=self.ack_wait,
                max_deliver=self.max_deliver,
                # One batch in flight: a redelivery comes before anything newer (order).
                max_ack_pending=self.batch_size * self.batches_in_flight,
                filter_subject=self.subject,
                metadata=self.metadata(),
                **start.policy(),
            )
            info = await self.js.add_consumer(self.stream.name, config)
            if start.kind == "time":
                self.floor = int(info.delivered.stream_seq) if info.delivered else 0
                info = await self._save(info.config)
            self.created = True
        else:
            if info.config.filter_subject != self.subject:
                raise CatchUpError(
                    f"durable {self.durable} follows {info.config.filter_subject!r}, not"
                    f" {self.subject!r}; use another durable name for another subject"
                )
            self._load(info)
            await self._rewind_to_ack_floor()
        self.config = info.config
        if watermarks is not None:
            self.watermarks = dict(watermarks)
        await self._subscribe()
        return self.created

    async def _subscribe(self) -> None:
        """A new inbox for the durable's batches; what the old one still held or receives is
        dropped (it comes again, or was handed out)."""
        if self.sub is not None:
            await self.sub.close()
        self.sub = Puller(self.js, self.stream.name, self.durable)
        await self.sub.open()

    async def _rewind_to_ack_floor(self) -> None:
        """Deliver the unacknowledged messages again now, not after the ack wait (JetStream's
        consumer reset, nats-server 2.14+; older servers redeliver them after the ack wait)."""
        try:
            await self.js.reset_consumer(self.stream.name, self.durable)
        except APIError as exc:
            _log.warning(
                "durable %s: cannot rewind (%s); unacknowledged messages come again after"
                " the ack wait",
                self.durable,
                exc.description,
            )

    async def close(self) -> None:
        if self._fill is not None:
            with contextlib.suppress(Exception):
                await self._fill.aclose()
            self._fill = None
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.close()
            self.sub = None

    async def delete(self) -> None:
        """Remove the durable and its state (a rebuild starts again from the beginning)."""
        await self.close()
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream.name, self.durable)

    async def _save(self, config: ConsumerConfig) -> ConsumerInfo:
        meta = {k: v for k, v in (config.metadata or {}).items() if not k.startswith("_nats.")}
        meta.update(self.metadata())
        info = await self.js.add_consumer(self.stream.name, config.evolve(metadata=meta))
        self.config = info.config
        return info

    async def save(self) -> None:
        """Store the watermarks and floor in the durable."""
        assert self.config is not None, "open() first"
        await self._save(self.config)

    async def pending(self) -> int:
        """Messages the durable has not delivered or not had acknowledged yet."""
        info = await self.js.consumer_info(self.stream.name, self.durable)
        return int(info.num_pending) + int(info.num_ack_pending)

    @property
    def filling(self) -> bool:
        """True while events are being read from the stores."""
        return self._fill is not None

    # -- reading

    async def next_batch(self, timeout: float = 1.0) -> Batch:
        """The next events to hand out: from the stores while healing a gap, else from the
        stream. Handle the events, then `commit` the batch."""
        assert self.sub is not None, "open() first"
        while True:
            if self._fill is not None:
                try:
                    return await anext(self._fill)
                except StopAsyncIteration:
                    self._fill = None
                    if self._rewind:
                        # Messages fetched before the gap was seen were never handed out.
                        await self._rewind_to_ack_floor()
                        await self._subscribe()
                        self._rewind = False
            msgs = await self.sub.fetch(self.batch_size, timeout=timeout)
            first = await self._overtaken(msgs)
            if first is None:
                return self._from_stream(msgs)
            self._rewind = bool(msgs)
            self._fill = self._heal(first)

    async def _overtaken(self, msgs: list[Msg]) -> int | None:
        """The stream's first sequence if it has moved past what this consumer accounted for."""
        if msgs and _seq(msgs[0]) == self.floor + 1:
            return None  # contiguous with what we handled: nothing can be missing
        info = await self.js.stream_info(self.stream.name)
        first = int(info.state.first_seq)
        return first if first > self.floor + 1 else None

    def _from_stream(self, msgs: list[Msg]) -> Batch:
        batch = Batch(msgs=[])
        for msg in msgs:
            env = envelope_pb2.Envelope()
            try:
                env.ParseFromString(msg.data)
            except DecodeError:
                batch.undecodable.append(msg)
                continue
            batch.msgs.append(msg)
            mark = self.watermark(env.source)
            if mark is not None and env.source_position <= mark:
                continue  # handed out already (from a store, or a re-publication)
            self.watermarks[env.source] = env.source_position
            batch.events.append(Event(env, msg.subject, _seq(msg)))
        return batch

    async def _heal(self, first: int) -> AsyncGenerator[Batch, None]:
        """Read every source's store after its watermark, in pages; then raise the floor."""
        _log.info(
            "durable %s: the stream starts at %d, past %d; reading the stores",
            self.durable,
            first,
            self.floor,
        )
        sources = await self.directory.sources()
        if not sources:
            self._warn_once(
                "",
                "no service offers a catch-up read here (C360_SERVICES, or event_sources in"
                " endpoints.json); events the stream no longer holds cannot be replayed",
            )
        for source, address in sources.items():
            if not subjects.may_match_prefix(self.subject, f"{envelope.SUBJECT_ROOT}.{source}"):
                continue
            after = self.watermark(source)
            if after is None:
                self._warn_once(
                    source,
                    f"source {source}: events may have left the stream before this durable"
                    " saw any of them; a durable created with --from-start gets them all",
                )
                continue
            # The seam: the source's first event the stream still holds; the store gives
            # everything before it, the stream the rest (up to the head if it holds none).
            seam = await self._first_in_stream(source, first)
            async with contextlib.aclosing(self.directory.read(address, after)) as pages:
                async for page in pages:
                    batch, reached = Batch(), False
                    for env in page.envelopes:
                        if seam is not None and env.source_position >= seam:
                            reached = True
                            break
                        subject = envelope.subject_of(env)
                        if subjects.matches(self.subject, subject):
                            batch.events.append(Event(env, subject))
                        self.watermarks[source] = env.source_position
                    if batch.events:
                        yield batch
                    if reached:
                        break
        self.floor = max(self.floor, first - 1)

    async def _first_in_stream(self, source: str, first: int) -> int | None:
        """The source position of the source's first message at or after stream seq `first`."""
        subject = f"{envelope.SUBJECT_ROOT}.{source}.>"
        try:
            msg = await self.js.get_msg(
                self.stream.name, seq=max(first, 1), subject=subject, next=True
            )
        except NotFoundError:
            return None
        env = envelope_pb2.Envelope()
        try:
            env.ParseFromString(msg.data or b"")
        except DecodeError:
            return None
        return int(env.source_position)

    def _warn_once(self, source: str, message: str) -> None:
        if source not in self._warned:
            self._warned.add(source)
            self.warn(message)

    def floor_after(self, batch: Batch) -> int:
        """Where the floor stands once `batch` is committed."""
        return max([self.floor, *(_seq(m) for m in (*batch.msgs, *batch.undecodable))])

    async def commit(self, batch: Batch, *, save: bool = True) -> None:
        """After the batch's events were handled: store the state (unless `save` is False,
        for a consumer that keeps its watermarks elsewhere), then acknowledge the messages."""
        self.floor = self.floor_after(batch)
        if save and (batch.msgs or batch.undecodable or batch.events):
            await self.save()
        if self.config is not None and self.config.ack_policy == AckPolicy.ALL:
            if batch.msgs:
                await batch.msgs[-1].ack()
            return
        for msg in batch.msgs:
            await msg.ack()
