"""The README's tour as a script: its commands in order, placeholders filled from what the
commands before printed (or from a lookup a user would make), and what each must do (succeed,
or be refused where its comment says so)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("## A five-minute tour", "## Configuration")
"""The tour is every ```sh block between these two headings."""
PLACEHOLDER = re.compile(r"<([a-z_ ]+)>")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RESULT_LINE = re.compile(rf"  ([a-z][a-z ]*?) ({UUID})  version")
FOLLOWING_SECONDS = 3.0
"""A command that follows (--follow) runs this long, then is stopped as a user would."""


@dataclass(frozen=True)
class Step:
    """One command of the tour as written, and its comment."""

    line: int
    command: str
    comment: str
    last: bool = True
    """The last command of its line (`a; b  # refused` is about b)."""

    @property
    def refused(self) -> bool:
        """Its comment says it is refused (it must fail, with a message)."""
        return self.last and self.comment.startswith("refused")

    @property
    def follows(self) -> bool:
        """It runs until stopped (Ctrl-C), as --follow and a subscription without --drain do."""
        return "--follow" in self.command or (
            self.command.startswith("c360 subscribe") and "--drain" not in self.command
        )


def steps(readme: str) -> list[Step]:
    """The tour's commands: continuation lines joined, `;` splitting two commands on a line,
    result lines (`#   {...}`) left out."""
    start, end = (readme.index(s) for s in SECTIONS)
    found: list[Step] = []
    in_block = False
    pending = ""
    pending_line = 0
    for number, raw in enumerate(readme[start:end].splitlines(), readme[:start].count("\n") + 1):
        if raw.startswith("```"):
            in_block = raw.strip() == "```sh" and not in_block
            continue
        if not in_block or (not pending and raw.lstrip().startswith("#")):
            continue
        text = pending + (" " if pending else "") + raw.strip()
        if raw.rstrip().endswith("\\") or _open_quote(text):
            pending = text[:-1].rstrip() if raw.rstrip().endswith("\\") else text
            pending_line = pending_line or number
            continue
        first = pending_line or number
        pending, pending_line = "", 0
        command, comment = _split_comment(text)
        parts = _split_commands(command)
        for i, part in enumerate(parts):
            found.append(Step(first, part, comment, last=i == len(parts) - 1))
    return found


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """(index, character) of `text` outside single or double quotes, up to a comment (a #
    after a blank), which is yielded as (index, "#") and ends it."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and i > 0 and text[i - 1] == " ":
            yield i, "#"
            return
        else:
            yield i, ch
    if quote:
        yield len(text), quote  # still open at the end


def _open_quote(text: str) -> bool:
    """Whether a quote opened in `text` (before any comment) is still open at its end."""
    return any(i == len(text) and ch in "'\"" for i, ch in _unquoted(text))


def _split_comment(text: str) -> tuple[str, str]:
    """The command and its trailing `# comment` (a # outside quotes after a blank)."""
    for i, ch in _unquoted(text):
        if ch == "#":
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.strip(), ""


def _split_commands(command: str) -> list[str]:
    """`a; b` as two commands (a ; outside quotes)."""
    cuts = [i for i, ch in _unquoted(command) if ch == ";" and i < len(command)]
    bounds = zip([-1, *cuts], [*cuts, len(command)], strict=True)
    return [p for a, b in bounds if (p := command[a + 1 : b].strip())]


@dataclass
class Tour:
    """Runs steps in a folder whose `.c360` is the stack's home, as a user at a terminal."""

    home: Path
    workdir: Path
    values: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, Callable[[Tour], str]] = field(default_factory=dict)
    ran: list[tuple[Step, str, int, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, target in ((".c360", self.home), ("examples", ROOT / "examples")):
            link = self.workdir / name
            if not link.exists():
                link.symlink_to(target)

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "COLUMNS": "100"}

    def c360_json(self, *args: str) -> Any:
        """A lookup a user would make (not a step of the tour): `c360 ARGS --json`."""
        done = subprocess.run(
            [sys.executable, "-m", "c360_cli.main", *args, "--json"],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"lookup c360 {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def fill(self, step: Step) -> str:
        """The command with its placeholders replaced by the values they stand for."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.values:
                lookup = self.lookups.get(name)
                assert lookup is not None, f"README line {step.line}: nothing fills <{name}>"
                self.values[name] = str(lookup(self))
            return shlex.quote(str(self.values[name]))

        return PLACEHOLDER.sub(value, step.command)

    def run(self, step: Step) -> tuple[int, str, str]:
        command = self.fill(step)
        if "opportunity win" in command:
            moment = datetime.now(UTC) - timedelta(seconds=1)
            self.values.setdefault("a time before the win", moment.isoformat())
        try:
            done = subprocess.run(
                ["bash", "-c", command],
                capture_output=True,
                text=True,
                cwd=self.workdir,
                env=self.env(),
                timeout=FOLLOWING_SECONDS if step.follows else 300,
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as stopped:
            if not step.follows:
                raise
            code = 0
            out = _text(stopped.stdout)
            err = _text(stopped.stderr)
        self.ran.append((step, command, code, out, err))
        self._harvest(out)
        return code, out, err

    def _harvest(self, out: str) -> None:
        """Ids, document numbers and tokens a command printed, for the placeholders after it:
        from its JSON, or from the line a command's result is ("built  lead list 1f…  version
        1")."""
        for subject, found in RESULT_LINE.findall(out):
            self.values[f"{subject.strip().replace(' ', '_')}_id"] = found
        try:
            doc = json.loads(out)
        except ValueError:
            return
        for key, value in _pairs(doc):
            if (
                isinstance(value, str)
                and value
                and (key.endswith(("_id", "_number")) or key == "consistency_token")
            ):
                self.values[key] = value


def _pairs(doc: Any) -> Iterator[tuple[str, Any]]:
    """One level down first, then the top level's keys (they win, coming last)."""
    if isinstance(doc, dict):
        for value in doc.values():
            if isinstance(value, dict):
                yield from value.items()
        yield from doc.items()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
