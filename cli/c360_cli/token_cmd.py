"""`c360 token create`: issue a bearer token of a role, signed with the deployment's signing
key (HOME/auth/signing.pem, written by `c360 up`, or --signing-key FILE: the operator's)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from c360_cli.errors import EXIT_BAD_INPUT, CliError
from c360_platform import auth


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "token",
        help="issue bearer tokens for applications and people (operator)",
        description="Issue bearer tokens signed with the deployment's Ed25519 signing key:"
        " HOME/auth/signing.pem (written by `c360 up`), or --signing-key FILE (on Kubernetes,"
        " the key of the operator's Secret c360-auth-signing). Services hold only the public"
        " key, and cannot issue any.",
    )
    sub = p.add_subparsers(title="commands", dest="token_command", metavar="COMMAND", required=True)
    create = sub.add_parser("create", help="print a new token of a role")
    create.add_argument(
        "--role",
        required=True,
        choices=[str(r) for r in auth.Role],
        help="agent: customer data; integration: event logs; operator: everything;"
        " service: service-to-service",
    )
    create.add_argument(
        "--name",
        required=True,
        help="who holds it, as an id (e.g. app:erp-bridge); shown in the audit log, so no PII",
    )
    create.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        metavar="DAYS",
        help=f"valid for this many days (default {DEFAULT_DAYS:g})",
    )
    create.add_argument(
        "--signing-key",
        metavar="FILE",
        help="the signing key's PEM file (default: HOME/auth/signing.pem)",
    )
    create.set_defaults(func=create_token)
    revoke = sub.add_parser(
        "revoke",
        help="refuse every token of a holder issued until now (c360 up's services, at once)",
        description="Refuse, from now on, every token of --name issued until now, without a"
        " new signing key (which would end every token): the services of `c360 up` in HOME read"
        " HOME/auth/revoked.json again within seconds. Tokens created afterwards are good.",
    )
    revoke.add_argument("--name", required=True, help="the holder, as in `token create --name`")
    revoke.set_defaults(func=revoke_tokens)


DEFAULT_DAYS = 90.0
"""How long a token lives unless --days says otherwise."""


def _days(text: str) -> float:
    """A validity of more than 0 days (a token that has already expired is of no use)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 < days < 36500:  # nan and inf fail too
        raise argparse.ArgumentTypeError("must be more than 0 (and under 100 years)")
    return days


def create_token(args: argparse.Namespace) -> int:
    path = Path(args.signing_key or Path(args.home) / "auth" / auth.SIGNING_KEY_FILE)
    try:
        key = auth.SigningKey.from_pem(path.read_bytes())
    except OSError:
        raise CliError(
            f"no signing key at {path}: run `c360 up` once (it creates it), or name the"
            " operator's with --signing-key FILE"
        ) from None
    except ValueError as exc:
        raise CliError(f"{path}: not the deployment's signing key ({exc})") from None
    if not args.name.strip():
        raise CliError("--name: is required (an id such as app:erp-bridge)", EXIT_BAD_INPUT)
    if not auth.SUBJECT.fullmatch(args.name):
        raise CliError(
            "--name: use an id such as app:erp-bridge (letters, digits and ._:/- up to 128),"
            " not a person's name or e-mail",
            EXIT_BAD_INPUT,
        )
    revoked = Path(args.home) / "auth" / "revoked.json"
    with contextlib.suppress(ValueError):
        if auth.read_revocations(revoked).get(args.name, -1) >= int(time.time()):
            time.sleep(1 - time.time() % 1)  # revoked this second: issue in the next one
    valid_for = args.days * 86400
    token = key.issue(args.name, auth.Role(args.role), valid_for=valid_for)
    if args.json:
        expires = datetime.fromtimestamp(auth.expiry_of(token) or 0, UTC)
        document = {"token": token, "role": args.role, "name": args.name}
        document["expires_at"] = expires.isoformat().replace("+00:00", "Z")
        json.dump(document, sys.stdout)
        print()
    else:
        print(token)
    return 0


def revoke_tokens(args: argparse.Namespace) -> int:
    if not auth.SUBJECT.fullmatch(args.name):
        raise CliError("--name: not a holder's id (such as app:erp-bridge)", EXIT_BAD_INPUT)
    path = Path(args.home) / "auth" / "revoked.json"
    try:
        until = auth.revoke(path, args.name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    at = datetime.fromtimestamp(until, UTC).isoformat().replace("+00:00", "Z")
    if args.json:
        json.dump({"name": args.name, "revoked_until": at, "file": str(path)}, sys.stdout)
        print()
    else:
        print(f"tokens of {args.name} issued until {at} are refused from now on")
    return 0
