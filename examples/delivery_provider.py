"""A small delivery-provider stand-in: takes c360's campaign touches and reports back what
happened to each, the way an e-mail/SMS provider would.

It integrates only through the published contract (the protos in proto/): a durable JetStream
consumer of c360.marketing.touch.> as the `delivery` user (which may read marketing's events
and publish only on delivery.>), and DeliveryReports published on delivery.<kind>. A touch is
reported on once: its state file (--db) keeps the touches sent and whether c360 has a report on
each already (touch.responded: the demo reports on its own sends), and once caught up the
provider reports on those that have none. Outcomes are drawn from a seeded random generator
per touch, so a rerun reports the same; each report's id is derived from the touch and the
kind, so a report sent twice counts once in c360.

    python examples/delivery_provider.py follow [--drain] [--seed 7]   # deliver and report
    (state in --db, default HOME/delivery-provider.sqlite)
    python examples/delivery_provider.py report TOUCH_ID clicked [--detail URL]

c360's addresses come from --home/endpoints.json (`make run` writes it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from c360.events.v1 import envelope_pb2
from c360.events.v1 import marketing_events_pb2 as mev
from c360.marketing.v1 import delivery_pb2

DURABLE = "delivery-provider-touches"
"""Its consumer of every touch event (the provider's first, of sends only, was named
delivery-provider: a durable keeps the filter it was made with)."""
STREAM = "C360_MARKETING"
"""Marketing's events, copied from C360 for the provider: the only stream it may read."""
SUBJECT = "c360.marketing.touch.>"
SCHEMA = """
CREATE TABLE IF NOT EXISTS touches (
  touch_id TEXT PRIMARY KEY, channel TEXT NOT NULL, reported INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY);
"""
_REPORTS = uuid.UUID("5d1e0c2a-7b3f-4c36-8c36-c360c360de11")
KINDS = {
    name.removeprefix("TOUCH_RESPONSE_KIND_").lower(): value
    for name, value in mev.TouchResponseKind.items()
    if value
}
CHANCES = (("opened", 0.45), ("clicked", 0.35), ("replied", 0.05), ("unsubscribed", 0.04))
"""Of a delivered touch: opened; of an opened one: clicked, replied, unsubscribed."""


class ProviderError(Exception):
    """Something the user has to change; printed without a traceback."""


def provider_url(home: Path) -> str:
    """The `delivery` user's NATS URL from endpoints.json (or the admin URL without users)."""
    path = home / "endpoints.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProviderError(f"{path} does not exist; start c360 with `make run`") from None
    url = (data.get("nats_users") or {}).get("delivery") or data.get("nats_url")
    if not url:
        raise ProviderError(f"{path} names no NATS server")
    return str(url)


def outcomes(touch_id: str, channel: str, seed: int) -> list[tuple[str, str]]:
    """What happens to one touch: (kind, detail), in order; the same for the same seed."""
    rng = random.Random(f"{seed}:{touch_id}")
    roll = rng.random()
    if roll < 0.03:
        return [("hard_bounced", "mailbox does not exist")]
    if roll < 0.06:
        return [("soft_bounced", "mailbox full")]
    found: list[tuple[str, str]] = [("delivered", "")]
    if channel not in ("email", "sms") or rng.random() >= CHANCES[0][1]:
        return found
    found.append(("opened", ""))
    if rng.random() < CHANCES[1][1]:
        found.append(("clicked", "https://shop.example/offer"))
    if rng.random() < CHANCES[2][1]:
        found.append(("replied", "Please call me about this."))
    if rng.random() < CHANCES[3][1]:
        found.append(("unsubscribed", ""))
    return found


def report(touch_id: str, kind: str, detail: str = "") -> delivery_pb2.DeliveryReport:
    message = delivery_pb2.DeliveryReport(
        report_id=str(uuid.uuid5(_REPORTS, f"{touch_id}:{kind}")),
        touch_id=touch_id,
        kind=KINDS[kind],
        detail=detail,
    )
    message.occurred_at.GetCurrentTime()
    return message


async def publish(js: Any, message: delivery_pb2.DeliveryReport) -> None:
    kind = mev.TouchResponseKind.Name(message.kind).removeprefix("TOUCH_RESPONSE_KIND_").lower()
    await js.publish(
        f"delivery.{kind}", message.SerializeToString(), headers={"Nats-Msg-Id": message.report_id}
    )


@contextmanager
def state(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        db.executescript(SCHEMA)
        yield db


def take(db: sqlite3.Connection, env: envelope_pb2.Envelope) -> None:
    """One touch event's effect on the state, once per event id: a send is a touch to report
    on, a response (a report c360 took, ours or another provider's) means it is reported."""
    sent = mev.TouchSent()
    with db:
        if db.execute(
            "SELECT 1 FROM applied_events WHERE event_id = ?", (env.event_id,)
        ).fetchone():
            return
        db.execute("INSERT INTO applied_events VALUES (?)", (env.event_id,))
        if env.payload.Unpack(sent):
            channel = mev.MarketingChannel.Name(sent.channel).rsplit("_", 1)[-1].lower()
            db.execute(
                "INSERT OR IGNORE INTO touches VALUES (?, ?, 0)", (env.aggregate_id, channel)
            )
        elif env.payload.Is(mev.TouchResponded.DESCRIPTOR):
            db.execute(
                "INSERT INTO touches VALUES (?, '', 1)"
                " ON CONFLICT (touch_id) DO UPDATE SET reported = 1",
                (env.aggregate_id,),
            )


async def follow(home: Path, db_path: Path, seed: int, drain: bool) -> int:
    """Deliver every touch sent that has no report yet and report on it; each event is
    acknowledged once its effect on the state committed, each touch marked reported once
    its reports are published (a crash in between publishes the same reports again)."""
    nc = await nats.connect(provider_url(home), name=DURABLE, inbox_prefix="_INBOX_delivery")
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=64,
        filter_subject=SUBJECT,
    )
    counts: dict[str, int] = {}
    try:
        sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM, config=config)
        with state(db_path) as db:
            while True:
                try:
                    msgs = await sub.fetch(64, timeout=1)
                except TimeoutError:
                    msgs = []
                for msg in msgs:
                    take(db, envelope_pb2.Envelope.FromString(msg.data))
                    await msg.ack()
                if msgs:
                    continue
                # Caught up: the touches c360 has no report on are this provider's to report.
                pending = db.execute(
                    "SELECT touch_id, channel FROM touches WHERE NOT reported ORDER BY rowid"
                ).fetchall()
                for row in pending:
                    for kind, detail in outcomes(row["touch_id"], row["channel"], seed):
                        await publish(js, report(row["touch_id"], kind, detail))
                        counts[kind] = counts.get(kind, 0) + 1
                    with db:
                        db.execute(
                            "UPDATE touches SET reported = 1 WHERE touch_id = ?", (row["touch_id"],)
                        )
                if drain:
                    info = await sub.consumer_info()
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
    except NotFoundError:
        raise ProviderError("c360 has no event stream yet; is it running?") from None
    finally:
        await nc.close()
    print(json.dumps({"reports": dict(sorted(counts.items()))}))
    return 0


async def report_one(home: Path, touch_id: str, kind: str, detail: str) -> int:
    nc = await nats.connect(provider_url(home), name=DURABLE, inbox_prefix="_INBOX_delivery")
    try:
        message = report(touch_id, kind, detail)
        await publish(nc.jetstream(), message)
    except NotFoundError:
        raise ProviderError("c360 has no DELIVERY stream yet; is marketing running?") from None
    finally:
        await nc.close()
    print(json.dumps({"report_id": message.report_id, "touch_id": touch_id, "kind": kind}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".c360"), help="c360 state directory")
    parser.add_argument(
        "--db", type=Path, help="the touches reported on (default HOME/delivery-provider.sqlite)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("follow", help="deliver c360's touches and report on each")
    p.add_argument("--drain", action="store_true", help="exit once caught up")
    p.add_argument("--seed", type=int, default=7, help="the outcomes' seed (default 7)")
    p = sub.add_parser("report", help="report one outcome of a touch")
    p.add_argument("touch_id")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--detail", default="")
    args = parser.parse_args(argv)
    try:
        if args.command == "follow":
            db_path = args.db or args.home / "delivery-provider.sqlite"
            return asyncio.run(follow(args.home, db_path, args.seed, args.drain))
        return asyncio.run(report_one(args.home, args.touch_id, args.kind, args.detail))
    except ProviderError as exc:
        print(f"delivery_provider: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
