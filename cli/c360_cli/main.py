"""The `c360` console script: one argparse tree, every command module registers its own part."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from c360_cli import (
    call,
    contact_cmds,
    customer_cmds,
    deadletter,
    demo,
    marketing_cmds,
    ops,
    sales_cmds,
    subscribe,
    ticket_cmds,
    timeline_cmds,
    token_cmd,
    up,
    verify,
)
from c360_cli.client import CliError, parse_addr

GLOBAL_DEFAULTS: dict[str, Any] = {
    "json": False,
    "home": ".c360",
    "addr": [],
    "timeout": 15.0,
    "token": "",
}
"""Defaults of the options every (sub)command accepts; applied after parsing."""

REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    up.register,
    customer_cmds.register,
    ticket_cmds.register,
    marketing_cmds.register,
    contact_cmds.register,
    timeline_cmds.register,
    sales_cmds.register,
    demo.register,
    verify.register,
    subscribe.register,
    deadletter.register,
    call.register,
    token_cmd.register,
    ops.register,
]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options usable on every command, before or after the subcommand's name.

    They default to SUPPRESS so that a subcommand's parser never overwrites a value given
    earlier on the command line; `GLOBAL_DEFAULTS` fills in what nobody gave.
    """
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON instead of tables",
    )
    group.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"state directory holding endpoints.json (default {GLOBAL_DEFAULTS['home']})",
    )
    group.add_argument(
        "--addr",
        action="append",
        type=parse_addr,
        metavar="NAME=HOST:PORT",
        default=argparse.SUPPRESS,
        help="a service's address instead of endpoints.json's (repeatable; see `c360 services`)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=argparse.SUPPRESS,
        help="bearer token of the calls (default $C360_TOKEN, else HOME/auth/operator.token)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help=f"deadline of each call (default {GLOBAL_DEFAULTS['timeout']:g})",
    )


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that carries the global options; later definitions win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        add_global_options(self)


def _suppress_global_defaults(parser: argparse.ArgumentParser) -> None:
    """Make every global option (also one a command redefines, like `up --home`) default to
    SUPPRESS, recursively, so values given before the subcommand survive."""
    for action in parser._actions:
        if action.dest in GLOBAL_DEFAULTS:
            action.default = argparse.SUPPRESS
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _suppress_global_defaults(child)


def _version() -> str:
    try:
        return importlib.metadata.version("c360-cli")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The whole `c360` command tree."""
    parser = _Parser(
        prog="c360",
        description="Operate c360: run the stack, record customers, read timelines, verify.",
    )
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(title="commands", dest="command", metavar="COMMAND"),
    )
    subparsers.required = True
    parser.add_argument(
        "--version", action="version", version=f"c360 {_version()}", help="print the version"
    )
    for register in REGISTRARS:
        register(subparsers)
    _suppress_global_defaults(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except CliError as exc:
        if getattr(args, "json", False):  # scripts parse errors too
            print(json.dumps({"error": exc.message, "exit_code": exc.exit_code}), file=sys.stderr)
        else:
            print(exc.message, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, without a second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
