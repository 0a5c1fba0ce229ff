"""`c360 logs [SERVICE] [--follow]`: the logs of the stack `c360 up` runs (HOME/logs)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from c360_cli.argtypes import whole_number
from c360_cli.errors import EXIT_FAILURE, CliError

POLL_SECONDS = 0.25


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print (and follow) a service's log of the local stack",
        description=(
            "Print the end of a log `c360 up` writes under HOME/logs (one per service, and"
            " the embedded PostgreSQL's and NATS's). Without SERVICE: which logs there are."
        ),
    )
    parser.add_argument(
        "service", nargs="?", help="a service's name (see `c360 services`), or postgres, nats"
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    parser.add_argument(
        "-n",
        "--lines",
        type=lambda t: whole_number(t, 0, "0 or more lines"),
        default=50,
        metavar="N",
        help="how many of the last lines to print first (default 50; 0: none)",
    )
    parser.set_defaults(func=run)


def log_files(folder: Path) -> dict[str, Path]:
    """The logs in `folder` by name (the file name without .log)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.log")) if p.is_file()}


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, read from the end in blocks (logs can be large)."""
    if lines == 0:
        return []
    with path.open("rb") as f:
        position = f.seek(0, os.SEEK_END)
        data = b""
        # One newline more than lines wanted (the file's last one ends the last line).
        while position > 0 and data.count(b"\n") <= lines:
            step = min(65536, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    text = data.decode("utf-8", "replace").split("\n")
    if text and text[-1] == "":
        text.pop()  # the newline that ends the file
    return text[-lines:]


def follow(path: Path, offset: int) -> None:
    """Print what is appended to `path` from `offset` on, until interrupted; starts over when
    the file is replaced or truncated (a new `c360 up`)."""
    inode = path.stat().st_ino
    while True:
        try:
            stat = path.stat()
        except FileNotFoundError:
            time.sleep(POLL_SECONDS)
            continue
        if stat.st_ino != inode or stat.st_size < offset:
            inode, offset = stat.st_ino, 0
        if stat.st_size > offset:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read(stat.st_size - offset)
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        time.sleep(POLL_SECONDS)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.home) / "logs"
    logs = log_files(folder)
    if not logs:
        raise CliError(f"no logs in {folder}: has `c360 up` run with --home {args.home}?")
    if args.service is None:
        for name, file in logs.items():
            stat = file.stat()
            changed = datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            print(f"{name:<16} {stat.st_size:>12,} bytes  {changed}  {file}")
        return 0
    path = logs.get(args.service)
    if path is None:
        raise CliError(
            f"no log named {args.service!r} in {folder}; there are: {', '.join(logs)}",
            EXIT_FAILURE,
            code="NOT_FOUND",
            field="service",
        )
    for line in tail(path, args.lines):
        print(line)
    if args.follow:
        try:
            follow(path, path.stat().st_size)
        except KeyboardInterrupt:
            return 0
    return 0
