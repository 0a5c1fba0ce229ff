"""`c360 subscribe`: a reference consumer of c360's events, one JSON line per event."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from datetime import UTC
from typing import IO, Any

import nats
from google.protobuf import json_format
from nats.js.errors import NotFoundError

from c360_cli.argtypes import positive_int, whole_number
from c360_cli.client import endpoints_path, load_token, use_tls
from c360_cli.errors import CliError
from c360_cli.output import parse_time
from c360_platform import natsauth, pii, subjects
from c360_platform.catchup import CatchUpConsumer, CatchUpError, Event, SourceDirectory, StartAt
from c360_platform.datakeys import DataKeys
from c360_platform.envelope import SUBJECT_ROOT, UnknownEventType, unpack
from c360_platform.errors import C360Error
from c360_platform.streams import StreamSettings

_DURABLE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROLE = "erp"
"""The NATS role a subscriber connects as when endpoints.json names one (integrators' role)."""


def _durable(text: str) -> str:
    if not _DURABLE.match(text):
        raise argparse.ArgumentTypeError(
            "use 1 to 64 letters, digits, '-' or '_' (it names a JetStream consumer)"
        )
    return text


def _subject(text: str) -> str:
    try:
        subjects.check_pattern(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not subjects.may_match_prefix(text, SUBJECT_ROOT):
        raise argparse.ArgumentTypeError(
            f"{text!r} matches none of c360's events; they are published on"
            f" {SUBJECT_ROOT}.<area>.<aggregate>.<event>, e.g. {SUBJECT_ROOT}.customer.>"
        )
    return text


def _sequence(text: str) -> int:
    return whole_number(text, 1, "stream sequences start at 1")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `subscribe` subcommand."""
    parser = subparsers.add_parser(
        "subscribe",
        help="follow c360's events on a durable consumer, one JSON line each",
        description=(
            "Print every event matching SUBJECT as one JSON line, on a durable JetStream "
            "consumer: each line is acknowledged only after it was flushed, and a restart "
            "continues at the exact next event (unacknowledged ones may come again, with the "
            "same event_id). A durable started with --from-start gets every event ever "
            "stored, also those the stream no longer holds (read from the services' stores)."
        ),
    )
    parser.add_argument(
        "--durable",
        type=_durable,
        required=True,
        metavar="NAME",
        help="the consumer's name: a later run with it goes on where this one stopped",
    )
    parser.add_argument(
        "--subject",
        type=_subject,
        default=f"{SUBJECT_ROOT}.>",
        metavar="PATTERN",
        help=f"NATS subject pattern (default {SUBJECT_ROOT}.>)",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="a new durable begins at the first event"
    )
    start.add_argument(
        "--from-seq",
        type=_sequence,
        metavar="N",
        help="a new durable begins at stream sequence N",
    )
    start.add_argument(
        "--from-time",
        type=parse_time,
        metavar="TIME",
        help="a new durable begins at the first message stored at or after TIME (ISO-8601)",
    )
    parser.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format")
    parser.add_argument(
        "--batch", type=positive_int, default=256, metavar="N", help="events per batch and ack"
    )
    parser.add_argument(
        "--ack-wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="a new durable redelivers what was not acknowledged after this long (default 30)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="exit once every event so far is printed, instead of following new ones",
    )
    parser.add_argument(
        "--sealed",
        action="store_true",
        help="print personal data as published (sealed) instead of opening it with the keys"
        " of the customer service (GetDataKeys)",
    )
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help=f"NATS to connect to (default: endpoints.json's {ROLE!r} user, else nats_url)",
    )
    parser.set_defaults(func=run)


def _endpoints(args: argparse.Namespace) -> tuple[str, dict[str, str], dict[str, str]]:
    """(NATS URL, {source: catch-up read address}, {service: address}) from the flags and
    endpoints.json."""
    path = endpoints_path(args.home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    data = data if isinstance(data, dict) else {}
    use_tls(data)
    users = data.get("nats_users") if isinstance(data.get("nats_users"), dict) else {}
    url = args.nats_url or (users or {}).get(ROLE) or data.get("nats_url")
    if not isinstance(url, str) or not url:
        raise CliError(
            f"no NATS address: {path} does not exist or lacks it; start the stack with"
            " `c360 up` or pass --nats-url"
        )
    sources = data.get("event_sources")
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    return (
        url,
        {str(k): str(v) for k, v in (sources or {}).items()},
        {str(k): str(v) for k, v in (services or {}).items()},
    )


def line_of(event: Event) -> dict[str, Any]:
    """The JSON line of one event."""
    env = event.envelope
    try:
        payload: Any = json_format.MessageToDict(unpack(env), preserving_proto_field_name=True)
    except UnknownEventType:
        payload = None  # a contract newer than this CLI: the envelope fields still tell what
    return {
        "event_id": env.event_id,
        "subject": event.subject,
        "type": env.event_type,
        "source": env.source,
        "source_position": env.source_position,
        "customer_id": env.customer_id,
        "aggregate_id": env.aggregate_id,
        "aggregate_version": env.aggregate_version,
        "occurred_at": env.occurred_at.ToJsonString(),
        "correlation_id": env.correlation_id,
        "payload": payload,
    }


def _start(args: argparse.Namespace) -> StartAt | None:
    if args.from_start:
        return StartAt.beginning()
    if args.from_seq is not None:
        return StartAt.sequence(args.from_seq)
    if args.from_time is not None:
        return StartAt.moment(args.from_time.ToDatetime(tzinfo=UTC))
    return None


def _say(message: str) -> None:
    print(f"c360 subscribe: {message}", file=sys.stderr, flush=True)


async def follow(args: argparse.Namespace, out: IO[str]) -> int:
    url, sources, services = _endpoints(args)
    keys = None if args.sealed else DataKeys(services, load_token(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        # NATS reports a refused publish (an API request this user may not make) this way.
        if "permissions violation" in str(exc).lower():
            refused.append(str(exc).removeprefix("nats: "))
            stop.set()

    try:
        nc = await nats.connect(
            url,
            name=f"c360-subscribe-{args.durable}",
            connect_timeout=5,
            error_cb=on_error,
            **natsauth.client_options(url),
        )
    except Exception as exc:
        raise CliError(f"cannot connect to NATS ({exc}); is `c360 up` running?") from None
    # The stores' catch-up reads admit integration, service and operator tokens.
    directory = SourceDirectory(sources, token=load_token(args))
    stream = StreamSettings.from_env()
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            raise CliError(
                f"NATS has no stream {stream.name}; start c360 (`c360 up`) before subscribing"
            ) from None
        consumer = CatchUpConsumer(
            js,
            stream,
            args.durable,
            args.subject,
            directory,
            batch_size=args.batch,
            ack_wait=args.ack_wait,
            warn=_say,
        )
        start = _start(args)
        if not await consumer.open(start) and start is not None:
            _say(
                f"durable {args.durable} exists and continues where it left off"
                " (start options apply to a new durable only)"
            )
        while not stop.is_set():
            batch = await consumer.next_batch(timeout=1.0)
            lines = [line_of(event) for event in batch.events]
            if keys is not None and (customers := pii.subjects(lines)):
                try:
                    lines = pii.reveal_all(lines, await asyncio.to_thread(keys, customers))
                except C360Error as exc:
                    raise CliError(f"{exc}; pass --sealed to print what was published") from None
            for line in lines:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()  # every line is out before any of them is acknowledged
            for msg in batch.undecodable:
                _say(f"skipping a message on {msg.subject} that is not a c360 envelope")
                await msg.term()
            await consumer.commit(batch)
            caught_up = not len(batch) and not consumer.filling
            if args.drain and caught_up and await consumer.pending() == 0:
                break
        if refused:
            raise CliError(
                f"NATS refused this user: {refused[0]}; subscribe as the erp user of"
                " endpoints.json (nats_users.erp), or pass --nats-url with one allowed to"
                " read c360's events"
            )
        return 0
    except CatchUpError as exc:
        raise CliError(str(exc)) from None
    finally:
        await directory.close()
        if keys is not None:
            keys.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=2)


def run(args: argparse.Namespace) -> int:
    """Print events until interrupted (or, with --drain, until caught up)."""
    return asyncio.run(follow(args, sys.stdout))
