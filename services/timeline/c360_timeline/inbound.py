"""The timeline's ERP feed: a durable consumer of erp.> that validates each message against
c360.erp.v1, applies the valid ones like any event, and dead-letters the rest without stopping.

Per batch: the valid envelopes are applied in one transaction, the rejected messages (invalid,
about a customer c360 does not have, or conflicting with a document taken before:
erp_inbound.conflicts) are stored on the dead-letter stream (reason in the headers), and only
then is the batch acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from c360.events.v1 import envelope_pb2
from c360_platform.deadletter import dead_letter
from c360_platform.errors import Unavailable
from c360_platform.leader import unless_stopped
from c360_platform.pull import Puller, durable_puller
from c360_platform.streams import StreamSettings, ensure_stream
from c360_timeline import erp_inbound
from c360_timeline.readmodel import ReadModel
from c360_timeline.spec import ERP_FEED

_log = logging.getLogger(__name__)
DURABLE = ERP_FEED.name
CONSUMER = "timeline"
"""How the timeline names itself in dead letters (deadletter.timeline.erp.…)."""
RETRY_SECONDS = 5.0
"""How long a batch waits when the customer service cannot say whether its customers exist."""


class ErpIntake:
    """Pulls erp.> in batches; valid events go to the read model, the others to dead letters."""

    def __init__(
        self,
        view: ReadModel,
        *,
        stream: StreamSettings | None = None,
        durable: str = DURABLE,
        batch_size: int = 256,
        writing: asyncio.Lock | None = None,
    ) -> None:
        self.view = view
        self.writing = writing or asyncio.Lock()
        self.stream = stream or StreamSettings.inbound()
        self.durable = durable
        self.batch_size = batch_size
        self.js: JetStreamContext | None = None
        self.sub: Puller | None = None
        self.mutex = asyncio.Lock()
        self.applied = 0
        self.rejected = 0
        self.lettered = 0
        """The ERP stream's sequence up to which this feed handled every message before its
        durable was deleted (a rebuild replays the stream from its start): what it refuses
        again up to there was dead-lettered then, and is not lettered twice (the dead-letter
        stream drops a repeat only within its de-duplication window, 10 minutes)."""

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            # One batch in flight: a redelivery comes before anything newer (order).
            max_ack_pending=self.batch_size,
            filter_subject=f"{erp_inbound.SUBJECT_ROOT}.>",
        )

    async def open(self, js: JetStreamContext) -> None:
        """Create the ERP and dead-letter streams if missing, and bind the durable."""
        self.js = js
        await ensure_stream(js, self.stream)
        await ensure_stream(js, StreamSettings.dead_letters())
        self.sub = await durable_puller(js, self.stream.name, self.consumer_config())
        with contextlib.suppress(Exception):  # a previous holder's unacked batch: now, in order
            await js.reset_consumer(self.stream.name, self.durable)

    def close(self) -> None:
        self.js = self.sub = None

    async def delete(self) -> None:
        """Forget the durable's position (a rebuild replays the whole ERP stream), keeping
        in `lettered` how far it had handled."""
        if self.sub is not None:
            with contextlib.suppress(Exception):  # the connection went first
                await self.sub.close()
        if self.js is not None:
            with contextlib.suppress(Exception):  # none yet, or the connection went first
                info = await self.js.consumer_info(self.stream.name, self.durable)
                self.lettered = max(self.lettered, int(info.ack_floor.stream_seq))
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.stream.name, self.durable)
        self.sub = None

    async def pending(self) -> int:
        assert self.js is not None
        info = await self.js.consumer_info(self.stream.name, self.durable)
        return int(info.num_pending) + int(info.num_ack_pending)

    async def _unknown_customers(self, customer_ids: set[str]) -> set[str] | None:
        """The customers among `customer_ids` that c360 does not have: registered neither in
        the read model nor (asked when the read model does not know them: its feed may be
        behind) in the customer service, which lists every customer it ever registered,
        forgotten ones too. None when the customer service cannot be asked now."""
        if not customer_ids:
            return set()
        missing = customer_ids - await asyncio.to_thread(self.view.registered, customer_ids)
        lookup = getattr(self.view.keys, "lookup", None)
        if not missing or lookup is None:
            return missing
        try:
            found = await asyncio.to_thread(lookup, [uuid.UUID(c) for c in missing])
        except Unavailable as exc:
            _log.warning("ERP feed waits: %s", exc)
            return None
        return {c for c in missing if uuid.UUID(c) not in found}

    async def process_batch(
        self,
        timeout: float = 1.0,
        stop: asyncio.Event | None = None,
        pause: asyncio.Event | None = None,
    ) -> int:
        """Fetch one batch, apply or dead-letter each message, then ack. Returns how many.
        Waiting for a batch ends early when `stop` (or `pause`: a rebuild wants the feed) is
        set."""
        assert self.js is not None, "open() first"
        if self.sub is None:
            await self.open(self.js)
        assert self.sub is not None
        waiting = self.sub.fetch(self.batch_size, timeout=timeout)
        msgs = await (unless_stopped(stop, waiting, pause) if stop is not None else waiting)
        if not msgs:
            return 0
        valid: list[tuple[Msg, envelope_pb2.Envelope]] = []
        rejected: list[tuple[Msg, str]] = []
        for msg in msgs:
            try:
                valid.append(
                    (
                        msg,
                        erp_inbound.envelope_for(
                            msg.subject, msg.data, int(msg.metadata.sequence.stream)
                        ),
                    )
                )
            except erp_inbound.Rejected as exc:
                rejected.append((msg, str(exc)))
        unknown = await self._unknown_customers({env.customer_id for _, env in valid})
        if unknown is None:  # the customer service cannot say now: the batch again later
            for msg in msgs:
                await msg.nak(delay=RETRY_SECONDS)
            return 0
        for msg, env in valid:
            if env.customer_id in unknown:
                rejected.append((msg, erp_inbound.unknown_customer(env.customer_id)))
        valid = [(msg, env) for msg, env in valid if env.customer_id not in unknown]
        # Only this feed writes ERP documents, one batch at a time: what it reads of them
        # here is what the batch is applied on.
        read = erp_inbound.documents_read(env for _, env in valid)
        taken = await asyncio.to_thread(self.view.erp_documents, read) if read else {}
        envelopes: list[envelope_pb2.Envelope] = []
        reasons = erp_inbound.conflicts([env for _, env in valid], taken)
        for (msg, env), reason in zip(valid, reasons, strict=True):
            if reason is None:
                envelopes.append(env)
            else:
                rejected.append((msg, reason))
        if envelopes:
            async with self.writing:  # shared with the main feed: one writer of profiles
                self.applied += await asyncio.to_thread(self.view.apply, envelopes)
        for msg, reason in rejected:
            if int(msg.metadata.sequence.stream) <= self.lettered:
                continue  # refused before the rebuild that replays it: its letter is kept
            await dead_letter(self.js, msg, reason, CONSUMER)
            _log.warning(
                "dead-lettered %s #%d: %s", msg.subject, msg.metadata.sequence.stream, reason
            )
        self.rejected += len(rejected)
        for msg in msgs:
            await msg.ack()
        return len(msgs)
