"""A small ERP stand-in: debtor accounts in SQLite from c360's customer events, invoices and
payments published back to c360 on erp.>.

It integrates only through the published contract (the protos in proto/), the way a real ERP
would: a durable JetStream consumer as the `erp` user, acknowledging each event after its
effect is committed and dropping repeats by event id, and JetStream publishes of ErpEvents.
Names arrive sealed (docs/events.md, "Personal data"): the bridge opens them with the keys
CustomerService.GetDataKeys gives its integration token, and blanks a debtor's name when the
customer is forgotten.

    python examples/erp_bridge.py follow [--drain]     # registered customers become debtors
    python examples/erp_bridge.py debtors              # the debtor accounts
    python examples/erp_bridge.py invoice CUSTOMER_ID --amount 1250.00 [--currency EUR]
    python examples/erp_bridge.py invoice --order ORDER_ID --amount 1000.00  # bills an order
    python examples/erp_bridge.py pay INVOICE_NUMBER [--amount 500.00]
    python examples/erp_bridge.py credit INVOICE_NUMBER --amount 200.00   # goods returned
    python examples/erp_bridge.py deliver [--drain]  # open sales orders are delivered
    python examples/erp_bridge.py refused            # what c360 refused of ours, and why

State lives in --db (default .c360/erp-bridge.sqlite); c360's addresses in --home/endpoints.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import grpc
import nats
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from c360.customer.v1 import customer_service_pb2 as customer_api
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import customer_events_pb2 as customer_events
from c360.events.v1 import envelope_pb2
from c360.events.v1 import sales_order_events_pb2 as order_events

DURABLE = "erp-bridge"
STREAM = "C360"
SUBJECT = "c360.customer.customer.*"
ERP_SYSTEM = "erp-bridge"
SCHEMA = """
CREATE TABLE IF NOT EXISTS debtors (
  customer_id TEXT PRIMARY KEY, debtor_number TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
  opened_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (
  invoice_number TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES debtors,
  amount TEXT NOT NULL, currency TEXT NOT NULL, issue_date TEXT NOT NULL, due_date TEXT NOT NULL,
  paid TEXT NOT NULL DEFAULT '0', event_id TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
  payment_reference TEXT PRIMARY KEY, invoice_number TEXT NOT NULL REFERENCES invoices,
  amount TEXT NOT NULL, received_on TEXT NOT NULL, event_id TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS credit_notes (
  credit_note_number TEXT PRIMARY KEY, invoice_number TEXT NOT NULL REFERENCES invoices,
  amount TEXT NOT NULL, issue_date TEXT NOT NULL, event_id TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS deliveries (
  order_id TEXT PRIMARY KEY, order_number TEXT NOT NULL, customer_id TEXT NOT NULL,
  delivery_reference TEXT NOT NULL, delivered_on TEXT NOT NULL, event_id TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  order_id TEXT PRIMARY KEY, order_number TEXT NOT NULL, customer_id TEXT NOT NULL,
  remaining TEXT NOT NULL, open INTEGER NOT NULL);
"""
ORDERS_DURABLE = "erp-bridge-order-book"
"""Its consumer of every order event (the bridge's first, of confirmations only, was named
erp-bridge-orders: a durable keeps the filter it was made with)."""
ORDERS_SUBJECT = "c360.sales.order.>"
DEAD_LETTERS = "DEADLETTER"
DEAD_LETTER_DURABLE = "erp"
"""The one consumer of the dead-letter stream the `erp` user may have, with this filter: the
letters of what it published on erp.> that a c360 consumer refused (docs/consumers.md)."""
DEAD_LETTER_SUBJECT = "deadletter.*.erp.>"
_DELIVERY_NAMESPACE = uuid.UUID("b7d1e2f3-0a4b-4c5d-8e6f-c360e7b1de11")


class BridgeError(Exception):
    """Something the user has to change; printed without a traceback."""


# --------------------------------------------------------------------------- the ledger


@contextmanager
def ledger(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        # A name overwritten (a forgotten customer's) leaves no copy in the file's free pages.
        db.execute("PRAGMA secure_delete = ON")
        db.executescript(SCHEMA)
        yield db


def open_debtor(db: sqlite3.Connection, event_id: str, customer_id: str, name: str) -> bool:
    """Open the customer's debtor account once per event (a repeat changes nothing)."""
    with db:  # one transaction: the effect and the record that this event was applied
        if db.execute("SELECT 1 FROM applied_events WHERE event_id = ?", (event_id,)).fetchone():
            return False
        db.execute("INSERT INTO applied_events VALUES (?)", (event_id,))
        count = db.execute("SELECT count(*) FROM debtors").fetchone()[0]
        db.execute(
            "INSERT OR IGNORE INTO debtors VALUES (?, ?, ?, ?)",
            (customer_id, f"D-{10001 + count}", name, datetime.now(UTC).isoformat()),
        )
        return True


def rename_debtor(db: sqlite3.Connection, event_id: str, customer_id: str, name: str) -> None:
    with db:
        if db.execute("SELECT 1 FROM applied_events WHERE event_id = ?", (event_id,)).fetchone():
            return
        db.execute("INSERT INTO applied_events VALUES (?)", (event_id,))
        db.execute("UPDATE debtors SET name = ? WHERE customer_id = ?", (name, customer_id))


# --------------------------------------------------------------------------- sealed names

SEALED = re.compile(r"pii1~([0-9a-f]{32})~([A-Za-z0-9_-]+)~")
FORGOTTEN = "[forgotten]"


def data_key(home: Path, customer_id: str) -> bytes | None:
    """The customer's key, from the customer service (None once it is forgotten)."""
    token = (home / "auth" / "integration.token").read_text().strip()
    address = (endpoints(home).get("services") or {}).get("customer")
    if not address:
        raise BridgeError(f"{home}/endpoints.json names no customer service")
    with _channel(home, address) as channel:
        reply = customer_grpc.CustomerServiceStub(channel).GetDataKeys(
            customer_api.GetDataKeysRequest(customer_ids=[customer_id]),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    return next((bytes(k.key) for k in reply.keys if not k.forgotten), None)


def _channel(home: Path, address: str) -> grpc.Channel:
    """A channel to c360: TLS with the integration certificate endpoints.json names."""
    files = endpoints(home).get("tls_integration")
    if not isinstance(files, dict):
        return grpc.insecure_channel(address)  # a c360 without TLS (its mesh does it)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(files["ca"]).read_bytes(),
        private_key=Path(files["key"]).read_bytes(),
        certificate_chain=Path(files["cert"]).read_bytes(),
    )
    return grpc.secure_channel(address, credentials)


def opened(text: str, key: bytes | None) -> str:
    """`text` with its sealed values opened: AES-256-GCM, nonce first, the customer id as
    associated data."""

    def one(match: re.Match[str]) -> str:
        body = match.group(2)
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if key is None:
            return FORGOTTEN
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], bytes.fromhex(match.group(1))).decode()
        except InvalidTag:
            return FORGOTTEN

    return SEALED.sub(one, text)


# --------------------------------------------------------------------------- c360


def endpoints(home: Path) -> dict[str, Any]:
    path = home / "endpoints.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BridgeError(f"{path} does not exist; start c360 with `make run`") from None
    return data if isinstance(data, dict) else {}


INBOX = "_INBOX_erp"
"""The `erp` user may read replies only under its own inbox prefix."""


def erp_url(home: Path) -> str:
    """The `erp` user's NATS URL: it may read c360.> and publish only on erp.>."""
    data = endpoints(home)
    url = (data.get("nats_users") or {}).get("erp") or data.get("nats_url")
    if not url:
        raise BridgeError(f"{home}/endpoints.json names no NATS server")
    return str(url)


async def follow(home: Path, db_path: Path, drain: bool) -> int:
    """Turn registered customers into debtors; ack each event after its effect committed."""
    nc = await nats.connect(erp_url(home), name=DURABLE, inbox_prefix=INBOX)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=64,
        filter_subject=SUBJECT,
    )
    count = 0
    try:
        sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM, config=config)
        with ledger(db_path) as db:
            while True:
                try:
                    msgs = await sub.fetch(64, timeout=1)
                except TimeoutError:
                    msgs = []
                for msg in msgs:
                    env = envelope_pb2.Envelope.FromString(msg.data)
                    payload = _payload(env.payload)
                    if isinstance(payload, customer_events.CustomerRegistered):
                        name = opened(payload.display_name, data_key(home, env.customer_id))
                        count += open_debtor(db, env.event_id, env.customer_id, name)
                    elif isinstance(payload, customer_events.CustomerRenamed):
                        name = opened(payload.display_name, data_key(home, env.customer_id))
                        rename_debtor(db, env.event_id, env.customer_id, name)
                    elif isinstance(payload, customer_events.CustomerForgotten):
                        # The ledger keeps the account (invoices are kept by law), not the name.
                        rename_debtor(db, env.event_id, env.customer_id, FORGOTTEN)
                    await msg.ack()
                if drain and not msgs:
                    info = await sub.consumer_info()
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
    finally:
        await nc.close()
    print(json.dumps({"debtors_opened": count}))
    return 0


def _payload(packed: AnyMessage) -> Any:
    for cls in (
        customer_events.CustomerRegistered,
        customer_events.CustomerRenamed,
        customer_events.CustomerForgotten,
    ):
        if packed.Is(cls.DESCRIPTOR):
            message = cls()
            packed.Unpack(message)
            return message
    return None  # other customer events: nothing for the ledger


async def publish(home: Path, subject: str, event: erp.ErpEvent) -> None:
    """Publish one ErpEvent; its event id is the de-duplication id, so a resend is harmless."""
    nc = await nats.connect(erp_url(home), name=DURABLE, inbox_prefix=INBOX)
    try:
        await nc.jetstream().publish(
            subject, event.SerializeToString(), headers={"Nats-Msg-Id": event.event_id}
        )
    except NotFoundError:
        raise BridgeError("c360 has no ERP stream yet; is the timeline service running?") from None
    finally:
        await nc.close()


def _event(customer_id: str, event_id: str) -> erp.ErpEvent:
    message = erp.ErpEvent(event_id=event_id, customer_id=customer_id, erp_system=ERP_SYSTEM)
    message.occurred_at.GetCurrentTime()
    return message


def _amount(text: str) -> str:
    """An amount in the currency's major unit with at most two decimal places, as the ledger
    keeps it ("1250.00"); never rounded: 10.005 is refused, not sent as 10.00."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BridgeError(f"--amount {text!r} is not a number such as 1250.00") from None
    if not value.is_finite():
        raise BridgeError(f"--amount {text!r} is not a number such as 1250.00")
    if value <= 0:
        raise BridgeError("--amount must be more than zero")
    if value != value.quantize(Decimal("0.01")):
        raise BridgeError(f"--amount {text}: at most two decimal places (1250.00)")
    if value >= 10**15:
        raise BridgeError(f"--amount {text}: at most 15 digits before the point")
    return f"{value:.2f}"


def issue_invoice(
    home: Path,
    db_path: Path,
    customer_id: str,
    amount: str,
    currency: str,
    due_days: int,
    order_id: str = "",
) -> dict[str, Any]:
    with ledger(db_path) as db:
        booked = db.execute(
            "SELECT customer_id FROM orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        if not customer_id:
            if booked is None:
                raise BridgeError(
                    f"order {order_id or '(none)'} is not in the order book: name the customer,"
                    " or run `erp_bridge.py deliver --drain` to book c360's confirmed orders"
                )
            customer_id = booked["customer_id"]
        if not db.execute("SELECT 1 FROM debtors WHERE customer_id = ?", (customer_id,)).fetchone():
            raise BridgeError(
                f"{customer_id} is no debtor yet; run `erp_bridge.py follow --drain` after"
                " registering the customer in c360"
            )
        if booked is not None and booked["customer_id"] != customer_id:
            raise BridgeError(f"order {order_id} is {booked['customer_id']}'s, not {customer_id}'s")
        number = _document_number(db, "invoices", "INV")
        today = date.today()
        row = {
            "invoice_number": number,
            "customer_id": customer_id,
            "amount": _amount(amount),
            "currency": currency.upper(),
            "issue_date": today.isoformat(),
            "due_date": (today + timedelta(days=due_days)).isoformat(),
            "event_id": str(uuid.uuid4()),
        }
        event = _event(customer_id, row["event_id"])
        event.invoice_issued.CopyFrom(
            erp.InvoiceIssued(
                invoice_number=number,
                amount=erp.Money(currency=row["currency"], amount=row["amount"]),
                issue_date=row["issue_date"],
                due_date=row["due_date"],
                # The c360 order it bills: sales shows it invoiced (one the bridge did not
                # book yet is sent as given; c360 refuses one that is not the customer's).
                order_id=order_id,
            )
        )
        # Published before the ledger commits: an invoice c360 was not told of is not kept
        # (a publish that failed rolls it back; one whose answer was lost, repeated with the
        # same event id, is dropped by c360).
        with db:
            db.execute(
                "INSERT INTO invoices (invoice_number, customer_id, amount, currency,"
                " issue_date, due_date, event_id) VALUES (:invoice_number, :customer_id,"
                " :amount, :currency, :issue_date, :due_date, :event_id)",
                row,
            )
            asyncio.run(publish(home, "erp.invoice.issued", event))
    return {**row, "order_id": order_id} if order_id else row


def receive_payment(
    home: Path, db_path: Path, invoice_number: str, amount: str | None
) -> dict[str, Any]:
    with ledger(db_path) as db:
        invoice = _invoice(db, invoice_number)
        open_amount = _open(db, invoice)
        paid = _amount(amount) if amount else f"{open_amount:.2f}"
        row = {
            "payment_reference": _document_number(db, "payments", "PAY"),
            "invoice_number": invoice_number,
            "amount": paid,
            "received_on": date.today().isoformat(),
            "event_id": str(uuid.uuid4()),
        }
        event = _event(invoice["customer_id"], row["event_id"])
        event.payment_received.CopyFrom(
            erp.PaymentReceived(
                payment_reference=row["payment_reference"],
                amount=erp.Money(currency=invoice["currency"], amount=paid),
                invoice_number=invoice_number,
                received_on=row["received_on"],
            )
        )
        with db:  # published before it commits, as an invoice is
            db.execute(
                "INSERT INTO payments VALUES (:payment_reference, :invoice_number, :amount,"
                " :received_on, :event_id)",
                row,
            )
            db.execute(
                "UPDATE invoices SET paid = ? WHERE invoice_number = ?",
                (f"{Decimal(invoice['paid']) + Decimal(paid):.2f}", invoice_number),
            )
            asyncio.run(publish(home, "erp.payment.received", event))
    return row


def _invoice(db: sqlite3.Connection, number: str) -> sqlite3.Row:
    invoice: sqlite3.Row | None = db.execute(
        "SELECT * FROM invoices WHERE invoice_number = ?", (number,)
    ).fetchone()
    if invoice is None:
        raise BridgeError(f"no invoice {number}; `debtors` lists the open ones")
    return invoice


def _document_number(db: sqlite3.Connection, table: str, prefix: str) -> str:
    """The next number of a document of ours ("PAY-2026-000002")."""
    count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return f"{prefix}-{date.today().year}-{count + 1:06d}"


def _open(db: sqlite3.Connection, invoice: sqlite3.Row) -> Decimal:
    """What is still open on an invoice: its amount less what was paid and credited."""
    credited = db.execute(
        "SELECT coalesce(sum(CAST(amount AS REAL)), 0) FROM credit_notes WHERE invoice_number = ?",
        (invoice["invoice_number"],),
    ).fetchone()[0]
    left = Decimal(invoice["amount"]) - Decimal(invoice["paid"]) - Decimal(str(credited))
    return left.quantize(Decimal("0.01"))


def issue_credit_note(
    home: Path, db_path: Path, invoice_number: str, amount: str
) -> dict[str, Any]:
    """Credit part or all of an invoice (goods returned, a price corrected)."""
    with ledger(db_path) as db:
        invoice = _invoice(db, invoice_number)
        credited = _amount(amount)
        if Decimal(credited) > _open(db, invoice):
            raise BridgeError(
                f"--amount {amount}: more than is open on {invoice_number}"
                f" ({_open(db, invoice)} {invoice['currency']})"
            )
        row = {
            "credit_note_number": _document_number(db, "credit_notes", "CN"),
            "invoice_number": invoice_number,
            "amount": credited,
            "issue_date": date.today().isoformat(),
            "event_id": str(uuid.uuid4()),
        }
        event = _event(invoice["customer_id"], row["event_id"])
        event.credit_note_issued.CopyFrom(
            erp.CreditNoteIssued(
                credit_note_number=row["credit_note_number"],
                amount=erp.Money(currency=invoice["currency"], amount=credited),
                invoice_number=invoice_number,
                issue_date=row["issue_date"],
            )
        )
        with db:  # published before it commits, as an invoice is
            db.execute(
                "INSERT INTO credit_notes VALUES (:credit_note_number, :invoice_number, :amount,"
                " :issue_date, :event_id)",
                row,
            )
            asyncio.run(publish(home, "erp.credit_note.issued", event))
    return row


async def deliver(home: Path, db_path: Path, drain: bool) -> int:
    """Deliver the sales orders still open and tell c360 (erp.order.delivered).

    The ledger keeps an order book from c360's order events: a confirmed order is open until
    c360 records it fulfilled or unrealised, and what another ERP (the demo's) delivered of it
    is not delivered again. Each event is acknowledged once its effect on the book committed
    (a repeat is dropped by its event id); once caught up, every open order is delivered,
    what is left of each line, in one delivery whose event id derives from the order, so a
    repeat publishes the same event."""
    nc = await nats.connect(erp_url(home), name=ORDERS_DURABLE, inbox_prefix=INBOX)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=ORDERS_DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=64,
        filter_subject=ORDERS_SUBJECT,
    )
    delivered = 0
    try:
        sub = await js.pull_subscribe(
            ORDERS_SUBJECT, durable=ORDERS_DURABLE, stream=STREAM, config=config
        )
        with ledger(db_path) as db:
            while True:
                try:
                    msgs = await sub.fetch(64, timeout=1)
                except TimeoutError:
                    msgs = []
                for msg in msgs:
                    book_order(db, envelope_pb2.Envelope.FromString(msg.data))
                    await msg.ack()
                if msgs:
                    continue
                # Caught up: what c360 knows of the orders is in the book.
                for event in open_deliveries(db):
                    await js.publish(
                        "erp.order.delivered",
                        event.SerializeToString(),
                        headers={"Nats-Msg-Id": event.event_id},
                    )
                    record_delivery(db, event)
                    delivered += 1
                if drain:
                    info = await sub.consumer_info()
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
    finally:
        await nc.close()
    print(json.dumps({"orders_delivered": delivered}))
    return 0


def book_order(db: sqlite3.Connection, env: envelope_pb2.Envelope) -> None:
    """One order event's effect on the order book, once per event id."""
    confirmed = order_events.OrderConfirmed()
    recorded = order_events.OrderFulfilmentRecorded()
    applied = "SELECT 1 FROM applied_events WHERE event_id = ?"
    with db:
        if db.execute(applied, (env.event_id,)).fetchone():
            return
        db.execute("INSERT INTO applied_events VALUES (?)", (env.event_id,))
        order_id = env.aggregate_id
        if env.payload.Unpack(confirmed):
            remaining = {x.line_id: x.quantity for x in confirmed.lines}
            db.execute(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, 1)",
                (order_id, confirmed.order_number, env.customer_id, json.dumps(remaining)),
            )
        elif env.payload.Unpack(recorded):
            row = db.execute("SELECT remaining FROM orders WHERE order_id = ?", (order_id,))
            found = row.fetchone()
            if found is None:
                return
            remaining = json.loads(found["remaining"])
            for x in recorded.delivered:
                if x.line_id in remaining:
                    left = Decimal(remaining[x.line_id]) - Decimal(x.quantity)
                    remaining[x.line_id] = str(max(left, Decimal(0)))
            db.execute(
                "UPDATE orders SET remaining = ?, open = open AND ? WHERE order_id = ?",
                (json.dumps(remaining), not recorded.complete, order_id),
            )
        elif env.payload.Is(order_events.OrderFulfilled.DESCRIPTOR) or env.payload.Is(
            order_events.OrderUnrealised.DESCRIPTOR
        ):
            db.execute("UPDATE orders SET open = 0 WHERE order_id = ?", (order_id,))


async def refused(home: Path) -> list[dict[str, str]]:
    """The letters of our messages that c360 refused since the last look (each once: they
    are acknowledged), with the consumer that refused each and its reason."""
    nc = await nats.connect(erp_url(home), name=DEAD_LETTER_DURABLE, inbox_prefix=INBOX)
    found: list[dict[str, str]] = []
    try:
        sub = await nc.jetstream().pull_subscribe(
            DEAD_LETTER_SUBJECT, durable=DEAD_LETTER_DURABLE, stream=DEAD_LETTERS
        )
        while True:
            try:
                msgs = await sub.fetch(64, timeout=1)
            except TimeoutError:
                break
            for msg in msgs:
                headers = msg.headers or {}
                event = erp.ErpEvent()
                with suppress(DecodeError):  # not an ErpEvent at all: the reason says so
                    event.ParseFromString(msg.data)
                found.append(
                    {
                        "subject": msg.subject.split(".", 2)[2],  # as we published it
                        "event_id": event.event_id,
                        "refused_by": headers.get("C360-Consumer", ""),
                        "reason": headers.get("C360-Reason", ""),
                    }
                )
                await msg.ack()
    finally:
        await nc.close()
    return found


def open_deliveries(db: sqlite3.Connection) -> list[erp.ErpEvent]:
    """The delivery of each open order the bridge has not delivered yet: what is left of it."""
    rows = db.execute(
        "SELECT * FROM orders o WHERE open AND NOT EXISTS"
        " (SELECT 1 FROM deliveries d WHERE d.order_id = o.order_id) ORDER BY rowid"
    ).fetchall()
    found: list[erp.ErpEvent] = []
    for row in rows:
        lines = [
            erp.DeliveredLine(line_id=line_id, quantity=quantity)
            for line_id, quantity in json.loads(row["remaining"]).items()
            if Decimal(quantity) > 0
        ]
        if not lines:
            continue
        event = _event(row["customer_id"], str(uuid.uuid5(_DELIVERY_NAMESPACE, row["order_id"])))
        event.order_delivered.CopyFrom(
            erp.OrderDelivered(
                order_id=row["order_id"],
                order_number=row["order_number"],
                delivery_reference=f"DN-{row['order_number'].removeprefix('SO-')}",
                delivered_on=date.today().isoformat(),
                lines=lines,
            )
        )
        found.append(event)
    return found


def record_delivery(db: sqlite3.Connection, event: erp.ErpEvent) -> None:
    """A delivery published: recorded in the ledger, its order no longer open."""
    d = event.order_delivered
    with db:
        db.execute(
            "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
            (d.order_id, d.order_number, event.customer_id, d.delivery_reference,
             d.delivered_on, event.event_id),
        )  # fmt: skip
        db.execute("UPDATE orders SET open = 0 WHERE order_id = ?", (d.order_id,))


def debtors(db_path: Path) -> list[dict[str, Any]]:
    with ledger(db_path) as db:
        rows = db.execute(
            "SELECT d.customer_id, d.debtor_number, d.name,"
            " coalesce(sum(CAST(i.amount AS REAL) - CAST(i.paid AS REAL)), 0)"
            " - coalesce((SELECT sum(CAST(c.amount AS REAL)) FROM credit_notes c"
            " JOIN invoices ci ON ci.invoice_number = c.invoice_number"
            " WHERE ci.customer_id = d.customer_id), 0) AS open_amount"
            " FROM debtors d LEFT JOIN invoices i ON i.customer_id = d.customer_id"
            " GROUP BY d.customer_id ORDER BY d.debtor_number"
        ).fetchall()
        return [dict(r) for r in rows]


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".c360"), help="c360 state directory")
    parser.add_argument("--db", type=Path, help="the ledger (default HOME/erp-bridge.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("follow", help="open a debtor account for every registered customer")
    p.add_argument("--drain", action="store_true", help="exit once caught up")
    sub.add_parser("debtors", help="list the debtor accounts")
    p = sub.add_parser("invoice", help="issue an invoice and publish it to c360")
    p.add_argument("customer_id", nargs="?", default="", help="default: the order's customer")
    p.add_argument("--amount", required=True)
    p.add_argument("--currency", default="EUR")
    p.add_argument("--due-days", type=int, default=30)
    p.add_argument("--order", default="", help="the c360 sales order it bills (its id)")
    p = sub.add_parser("deliver", help="deliver the open sales orders, tell c360")
    p.add_argument("--drain", action="store_true", help="exit once caught up")
    p = sub.add_parser("pay", help="record a payment of an invoice and publish it to c360")
    p.add_argument("invoice_number")
    p.add_argument("--amount", help="default: what is still open")
    p = sub.add_parser("credit", help="credit part of an invoice and publish it to c360")
    p.add_argument("invoice_number")
    p.add_argument("--amount", required=True)
    sub.add_parser("refused", help="what c360 refused of ours since the last look, and why")
    args = parser.parse_args(argv)
    db_path = args.db or args.home / "erp-bridge.sqlite"
    try:
        if args.command == "follow":
            return asyncio.run(follow(args.home, db_path, args.drain))
        if args.command == "deliver":
            return asyncio.run(deliver(args.home, db_path, args.drain))
        if args.command == "debtors":
            result: Any = debtors(db_path)
        elif args.command == "credit":
            result = issue_credit_note(args.home, db_path, args.invoice_number, args.amount)
        elif args.command == "refused":
            result = asyncio.run(refused(args.home))
        elif args.command == "invoice":
            result = issue_invoice(
                args.home,
                db_path,
                args.customer_id,
                args.amount,
                args.currency,
                args.due_days,
                args.order,
            )
        else:
            result = receive_payment(args.home, db_path, args.invoice_number, args.amount)
    except BridgeError as exc:
        print(f"erp_bridge: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
