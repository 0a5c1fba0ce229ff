"""`c360 deadletter list|replay`: messages a consumer could not take, and sending them again."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
from nats.js import JetStreamContext

from c360_cli.argtypes import positive_int
from c360_cli.client import load_endpoints
from c360_cli.errors import EXIT_FAILURE, CliError
from c360_cli.output import Output, short_time
from c360_platform import natsauth
from c360_platform.deadletter import (
    DeadLetter,
    DeadLetterNotFound,
    list_dead_letters,
    replay,
)

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `deadletter list` and `deadletter replay`."""
    parser = subparsers.add_parser(
        "deadletter",
        help="messages c360 could not take (malformed or unknown ERP events)",
        description=(
            "Inbound messages that failed validation are kept on the dead-letter stream with "
            "the reason; list them, and replay one after the cause was fixed."
        ),
    )
    sub = parser.add_subparsers(title="commands", dest="deadletter_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("list", help="list dead letters, oldest first")
    p.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N")
    p.add_argument("--nats-url", metavar="URL", help="NATS (default: endpoints.json's nats_url)")
    p.set_defaults(func=_list)
    p = sub.add_parser(
        "replay",
        help="publish a dead letter again on its subject, then remove it",
        description=(
            "Publish the dead letter's message again, unchanged, on its original subject; it "
            "is validated again (and dead-lettered again, with a new id, if still invalid)."
        ),
    )
    p.add_argument("id", type=positive_int, metavar="ID", help="the id `deadletter list` shows")
    p.add_argument("--nats-url", metavar="URL", help="NATS (default: endpoints.json's nats_url)")
    p.set_defaults(func=_replay)


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "subject": letter.subject,
        "reason": letter.reason,
        "consumer": letter.consumer,
        "failed_at": letter.failed_at,
        "stream": letter.stream,
        "sequence": letter.sequence,
        "msg_id": letter.msg_id,
        "size": len(letter.data),
    }


def _with_jetstream(
    args: argparse.Namespace, work: Callable[[JetStreamContext], Awaitable[T]]
) -> T:
    url = args.nats_url or load_endpoints(args).nats_url
    if not url:
        raise CliError(
            f"no nats_url: {args.home}/endpoints.json does not exist or lacks it; start the"
            " stack with `c360 up` or pass --nats-url"
        )

    async def main() -> T:
        try:
            nc = await nats.connect(
                url, name="c360-deadletter", connect_timeout=5, **natsauth.client_options(url)
            )
        except Exception as exc:
            raise CliError(f"cannot connect to NATS ({exc}); is `c360 up` running?") from None
        try:
            return await work(nc.jetstream())
        except (nats.errors.TimeoutError, TimeoutError):
            # A NATS user without the right to the dead letters gets no answer at all (its
            # requests are refused), only this.
            raise CliError(
                "NATS did not answer about the dead letters: the user of this URL may not read"
                " them (use the administrator's, nats_url of endpoints.json or"
                " --nats-url), or the server is too busy; try again"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout=2)

    return asyncio.run(main())


def _list(args: argparse.Namespace) -> int:
    letters = _with_jetstream(args, lambda js: list_dead_letters(js, args.limit))
    out = Output(args.json)
    if out.json_mode:
        out.json({"dead_letters": [_letter_json(x) for x in letters]})
        return 0
    if not letters:
        out.print("no dead letters")
        return 0
    out.table(
        ["id", "failed at (UTC)", "subject", "consumer", "reason"],
        [[x.id, short_time(x.failed_at)[:16], x.subject, x.consumer, x.reason] for x in letters],
        no_wrap={"id", "failed at (UTC)", "subject"},
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    try:
        letter = _with_jetstream(args, lambda js: replay(js, args.id))
    except DeadLetterNotFound as exc:
        raise CliError(str(exc), EXIT_FAILURE, code="NOT_FOUND", field="id") from None
    out = Output(args.json)
    if out.json_mode:
        out.json({"replayed": _letter_json(letter)})
    else:
        out.print(
            f"replayed dead letter {letter.id} on {letter.subject}; it is validated again"
            " (`c360 deadletter list` shows it anew if it still fails)"
        )
    return 0
