"""The `c360` console script: one argparse tree, every command module registers its own part."""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from c360_cli import catalogue, display
from c360_cli.argtypes import parse_addr
from c360_cli.errors import EXIT_BAD_INPUT, CliError

GLOBAL_DEFAULTS: dict[str, Any] = {
    "json": False,
    "home": ".c360",
    "addr": [],
    "timeout": 15.0,
    "token": "",
    "wide": False,
}
"""Defaults of the options every (sub)command accepts; applied after parsing."""


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
        "--wide",
        action="store_true",
        default=argparse.SUPPRESS,
        help="whole ids in lists (else their first 8 digits, which commands accept back)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help=f"deadline of each call (default {GLOBAL_DEFAULTS['timeout']:g})",
    )


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that carries the global options; later definitions win. Usage
    errors exit 2, as JSON on stderr when the command line asks for --json."""

    json_errors = False

    def __init__(self, *args: Any, stub: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        if not stub:  # a command not run this time is a name and a help line only
            add_global_options(self)

    def error(self, message: str) -> NoReturn:
        message = _did_you_mean(message)
        if _Parser.json_errors:
            error = CliError(f"{self.prog}: {message}", EXIT_BAD_INPUT, code="USAGE")
            print(json.dumps(error.as_json()), file=sys.stderr)
            self.exit(EXIT_BAD_INPUT)
        super().error(message)


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'tiket' (choose from ...)" with ", maybe you meant
    'ticket'?" after the word typed (as Python 3.14's argparse says it), when a choice is
    close to it; other messages as they are."""
    found = re.search(r"invalid choice: '([^']*)'( \(choose from (.*)\))$", message)
    if found is None:
        return message
    close = difflib.get_close_matches(found.group(1), re.findall(r"'([^']*)'", found.group(3)))
    if not close:
        return message
    return message[: found.start(2)] + f", maybe you meant '{close[0]}'?" + found.group(2)


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """argparse's "unrecognized arguments: ...", with the command's nearest option for an
    option it does not have ("--sate": did you mean --state?)."""
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in extras:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1)
            hints += [f"{word.split('=', 1)[0]}: did you mean {close[0]}?"] if close else []
    return f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" * bool(hints))


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
    import importlib.metadata  # ~50 ms, only for --version

    try:
        return importlib.metadata.version("c360-cli")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _git(*args: str) -> str | None:
    """What git prints for the checkout the CLI runs from (None: no git, or not a checkout)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit() -> str | None:
    """The git commit of the checkout the CLI runs from, if it runs from one."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+changes" if dirty else "")


def _contracts() -> list[str]:
    """The published contract's packages the CLI was built with (c360.<area>.vN)."""
    import c360  # the generated package; its folders are the contract's packages

    found: list[str] = []
    for root in map(Path, c360.__path__):
        for area in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isidentifier()):
            found += [
                f"c360.{area.name}.{v.name}"
                for v in sorted(area.iterdir())
                if v.is_dir() and re.fullmatch(r"v\d+", v.name)
            ]
    return found


def version_text() -> str:
    """What `c360 --version` prints: version, commit, contract versions."""
    commit = _commit()
    lines = [f"c360 {_version()}" + (f" (commit {commit})" if commit else "")]
    lines.append("contracts: " + ", ".join(_contracts()))
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (it runs git)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", 0)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `c360` command tree. With `argv`, only the module of the command it names is
    imported and registered (the other commands are catalogue entries, enough for `--help`);
    without, the whole tree (completion scripts and tests walk it)."""
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
        "--version",
        action=_VersionAction,
        help="print the version, the git commit and the contract versions",
    )
    wanted = catalogue.MODULES if argv is None else (catalogue.module_of(list(argv)),)
    registered: set[str] = set()
    for name, module, help_text in catalogue.COMMANDS:
        if module in wanted:
            if module not in registered:
                registered.add(module)
                importlib.import_module(f"c360_cli.{module}").register(subparsers)
        else:
            subparsers.add_parser(
                name, help=help_text, description=help_text, add_help=False, stub=True
            )
    _suppress_global_defaults(parser)
    _describe_by_help(parser)
    return parser


def _describe_by_help(parser: argparse.ArgumentParser) -> None:
    """Give a command without a description of its own its help line as one, so that its
    `--help` says what it does (`c360 pipeline define --help`: "Set up a pipeline or replace
    its stages.", not only its usage), recursively."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, child in action.choices.items():
            text = helps.get(name)
            if child.description is None and text and text != argparse.SUPPRESS:
                child.description = text[0].upper() + text[1:] + ("" if text[-1] in ".!?" else ".")
            _describe_by_help(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = "--json" in words
    parser = build_parser(words)
    try:
        args, extras = parser.parse_known_args(words)  # --help and --version print here
        if extras:  # told by the command's own parser, with its usage, not c360's
            command = parser_of(parser, getattr(args, "func", None))
            command.error(_unrecognized(command, extras))
    except BrokenPipeError:
        return _reader_gone()
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    display.wide = bool(args.wide)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except CliError as exc:
        if getattr(args, "json", False):  # scripts parse errors too
            print(json.dumps(exc.as_json()), file=sys.stderr)
        else:
            print(in_options(exc.message, options_of(parser, func)), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()
    finally:
        # A command run inside another process (tests) leaves its TLS choice behind it.
        chosen = sys.modules.get("c360_platform.tls")
        if chosen is not None:
            chosen.forget_choice()


def parser_of(
    parser: argparse.ArgumentParser, func: Callable[..., Any] | None
) -> argparse.ArgumentParser:
    """The parser of the command that runs `func` (`parser` itself if none does)."""
    parsers = [parser]
    while parsers and func is not None:
        found = parsers.pop()
        if found.get_default("func") is func:
            return found
        for action in found._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return parser


def options_of(parser: argparse.ArgumentParser, func: Callable[..., Any]) -> dict[str, str]:
    """The long options of the command that runs `func` and the global ones, by the request
    field each fills (its dest): `--from` by opened_from, `--min-score` by min_score."""

    def long_options(p: argparse.ArgumentParser) -> dict[str, str]:
        return {
            a.dest: long[0]
            for a in p._actions
            if (long := [o for o in a.option_strings if o.startswith("--")])
        }

    return long_options(parser) | long_options(parser_of(parser, func))


def in_options(text: str, options: dict[str, str]) -> str:
    """A refusal as the user typed the command: the request fields of more than one word it
    names ("opened_to: must be after opened_from") as the options that filled them ("--to:
    must be after --from"); a declared command's own refusals are rewritten already
    (`Command.in_options`), and a one-word field ("email") reads as it is."""
    for dest, option in options.items():
        if "_" in dest:
            text = re.sub(rf"(?<![\w.-]){re.escape(dest)}(?![\w.])", option, text)
    return text


def _reader_gone() -> int:
    """The reader (e.g. `| head`) went away: stop quietly, without a second error at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
