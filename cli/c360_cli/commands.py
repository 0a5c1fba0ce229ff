"""Commands declared as data: arguments to a request, one RPC, the CommandResult printed."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message

from c360_cli.argtypes import DAY_HELP, day, version_number, versioned
from c360_cli.client import Client
from c360_cli.errors import CliError
from c360_cli.output import Output
from c360_cli.words import CliWords

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

REQUEST_ID_HELP = (
    "idempotency key: a retry with the same id changes nothing and gets the same answer"
)


@dataclass(frozen=True)
class Api:
    """A service's API as its commands reach it."""

    service: str
    """Its name in the registry (`c360 services`), which --addr and endpoints.json use."""
    stub: Callable[[grpc.Channel], Any]
    """The generated stub class."""
    subject: str
    """What its commands change, as printed beside the result: customer, ticket."""
    version: Callable[[str], int] = version_number
    """The argparse type of --expected-version."""


@dataclass(frozen=True)
class Arg:
    """One argument, a positional (`customer_id`) or an option (`--name`), and the request
    field it fills (`display_name`, or `address.city` in a nested message)."""

    name: str
    field: str
    help: str
    metavar: str | None = None
    required: bool = False
    default: Any = None
    repeated: bool = False
    """An option given any number of times, for a repeated field."""
    optional: bool = False
    """A positional that may be left out (then it is `default`)."""
    type: Callable[[str], Any] | None = None
    """The argparse type (a converter such as `parse_time`)."""
    words: CliWords | None = None
    """An enum field: the argument is one of these words, and the request gets its value."""
    choices: bool = False
    """With `words`: argparse `choices` (exact words, listed in the usage line); otherwise any
    case and `-` or `_` are accepted."""
    flag: bool = False
    """An option without a value for a bool field (true when given)."""

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.flag:
            parser.add_argument(self.name, action="store_true", help=self.help)
            return
        options: dict[str, Any] = {"help": self.help}
        if self.metavar is not None:
            options["metavar"] = self.metavar
        if self.words is not None and self.choices:
            options["choices"] = self.words.words
        elif self.words is not None:
            options["type"] = self.words.parse
        elif self.type is not None:
            options["type"] = self.type
        if self.repeated:
            options.update(action="append", default=[])
        elif self.default is not None:
            options["default"] = self.default
        if self.optional:
            options["nargs"] = "?"
        if self.required:
            options["required"] = True
        parser.add_argument(self.name, **options)

    def value(self, args: argparse.Namespace) -> Any:
        """The request field's value (None: leave the field unset)."""
        value = getattr(args, self.dest)
        if value is None or self.words is None:
            return value
        return self.words.value(value)


Verb = str | Callable[[Any], str]
"""What a command prints on success, or a function of its request that says it."""


@dataclass(frozen=True)
class Command:
    """A command that sends one request and prints the CommandResult of the reply."""

    path: str
    """Its words under the API's command (`email add` in `c360 customer email add`)."""
    help: str
    api: Api
    rpc: str
    """The stub's method (`AddEmail`)."""
    request: type[Message]
    args: tuple[Arg, ...]
    verb: Verb
    shows: tuple[str, ...] = ()
    """Fields printed beside the result (and in its JSON): the reply's, else the request's."""
    request_id: bool = True
    """It takes --request-id."""
    expected_version: bool = False
    """It takes --expected-version."""
    description: str = ""
    """The text of its --help, when not `help`."""

    def build(self, args: argparse.Namespace) -> Message:
        """The request from the parsed arguments."""
        fields: dict[str, Any] = {"request_id": args.request_id} if self.request_id else {}
        for arg in self.args:
            value = arg.value(args)
            if value is None:
                continue
            *outer, last = arg.field.split(".")
            target = fields
            for name in outer:
                target = target.setdefault(name, {})
            target[last] = value
        return versioned(self.request(**fields), args)

    def run(self, args: argparse.Namespace) -> int:
        request = self.build(args)
        try:
            with Client(args) as client:
                method = getattr(client.stub(self.api.service, self.api.stub), self.rpc)
                reply = method(request, timeout=args.timeout)
        except CliError as refused:
            refused.message = self.in_options(refused.message)
            raise
        shown = {
            name: _shown(
                getattr(reply if name in reply.DESCRIPTOR.fields_by_name else request, name)
            )
            for name in self.shows
        }
        verb = self.verb if isinstance(self.verb, str) else self.verb(request)
        Output(args.json).result(verb, reply.result, self.api.subject, **shown)
        return 0

    def in_options(self, text: str) -> str:
        """A service's text with the request fields it names as this command's options: it
        says "set allow_unknown_customer" or "amount.amount: must be a decimal number", the
        user types --allow-unknown-customer and --amount. Fields of more than one word or part
        (an API's identifiers) wherever they stand; a one-word field only as the "field:" that
        begins a line, and only when its option is spelt otherwise ("quantity:" is --qty,
        "segments[0]:" of a repeated --segment is --segment; "email: not a valid address"
        reads as it is)."""
        for arg in sorted(self.args, key=lambda a: -len(a.field)):
            if not arg.name.startswith("--"):
                continue
            if "_" in arg.field or "." in arg.field:
                pattern = rf"(?<![\w.-]){re.escape(arg.field)}(?![\w.])"
                text = re.sub(pattern, arg.name, text)
            elif arg.dest != arg.field:
                # A repeated option's field names its value by index ("segments[1]: ...").
                index = r"(?:\[\d+\])?" if arg.repeated else ""
                text = re.sub(rf"(?m)^{re.escape(arg.field)}{index}:", f"{arg.name}:", text)
        return text


def _shown(value: Any) -> str:
    """A reply field as the result line shows it (a repeated one comma-separated)."""
    if isinstance(value, str | int | float | bool):
        return str(value)
    return ", ".join(str(v) for v in value)


def _group(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command that only holds commands (`customer email`)."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    nested = parser.add_subparsers(title="commands", dest=f"{name}_command", metavar="COMMAND")
    nested.required = True
    return nested


PERIOD = (
    Arg("--starts", "starts_on", f"first day: {DAY_HELP}", metavar="DAY", required=True, type=day),
    Arg("--ends", "ends_on", "last day (the same forms)", metavar="DAY", required=True, type=day),
)
"""A period's first and last day (`starts_on`, `ends_on`): a campaign's, a contract's."""


def add_commands(
    subparsers: Subparsers, commands: Iterable[Command], groups: Mapping[str, str]
) -> None:
    """Add each command, and the groups of nested ones (with their help from `groups`)."""
    made: dict[tuple[str, ...], Subparsers] = {(): subparsers}
    for command in commands:
        *outer, name = command.path.split()
        for depth in range(1, len(outer) + 1):
            key = tuple(outer[:depth])
            if key not in made:
                made[key] = _group(made[key[:-1]], key[-1], groups[key[-1]])
        parser = made[tuple(outer)].add_parser(
            name, help=command.help, description=command.description or command.help
        )
        if command.request_id:
            parser.add_argument("--request-id", default="", metavar="ID", help=REQUEST_ID_HELP)
        if command.expected_version:
            parser.add_argument(
                "--expected-version",
                type=command.api.version,
                metavar="N",
                help=f"refuse (conflict) unless the {command.api.subject} is still at version N",
            )
        for arg in command.args:
            arg.add_to(parser)
        parser.set_defaults(func=command.run)
