"""Contract evolution: a breaking proto change fails the build; old stored events stay readable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "buf" / "node_modules" / ".bin" / "buf"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=c360", "-c", "user.email=c360@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _breaking(repo: Path) -> subprocess.CompletedProcess[str]:
    """`make breaking` exactly as `make lint` runs it, on a copy of the protos."""
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "breaking",
            f"PROTO_DIR={repo / 'proto'}",
            f"CONTRACT_GIT={repo / '.git'}",
            "CONTRACT_BASE=HEAD",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_renumbered_field_in_a_published_message_fails_make_lint(tmp_path: Path) -> None:
    if not BUF.exists():
        pytest.skip("buf is not installed yet; `make lint` installs it")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", repo / "proto")
    _git(repo, "init", "--quiet")
    _git(repo, "add", "proto")
    _git(repo, "commit", "--quiet", "-m", "the landed contract")
    assert _breaking(repo).returncode == 0

    published = repo / "proto" / "c360" / "events" / "v1" / "customer_events.proto"
    text = published.read_text()
    assert "  string email = 1;\n" in text
    published.write_text(text.replace("  string email = 1;\n", "  string email = 5;\n", 1))
    refused = _breaking(repo)
    assert refused.returncode != 0
    assert "EmailAdded" in refused.stdout + refused.stderr


# -- upcasting: a stored event of an older layout is read into the current one ----------------


class Debtor(Aggregate):
    """Version 2 of an aggregate whose Opened event gained a currency after v1 was stored."""

    class Opened(Aggregate.Created):
        class_version = 2
        name: str
        currency: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Every debtor opened before currencies existed was kept in euros.
            state["currency"] = "EUR"

    @classmethod
    def open(cls, name: str, currency: str) -> Debtor:
        return cls._create(cls.Opened, id=uuid4(), name=name, currency=currency)

    def __init__(self, name: str, currency: str) -> None:
        self.name = name
        self.currency = currency


class DebtorV1(Aggregate):
    """The layout as version 1 of the code stored it."""

    class Opened(Aggregate.Created):
        name: str

    def __init__(self, name: str) -> None:
        self.name = name


def test_an_event_stored_by_an_older_version_is_upcast_when_read() -> None:
    app: Application[Any] = Application()  # the library's in-memory store: no I/O involved
    old = DebtorV1(name="Müller GmbH")
    stored = app.mapper.to_stored_event(old.collect_events()[0])
    # The same stored record, as the next release reads it: the classes at its topics are
    # now version 2 (here they have other names, so the topics are pointed at them).
    state = app.mapper.transcoder.decode(stored.state)
    assert "currency" not in state
    state["originator_topic"] = get_topic(Debtor)
    renamed = type(stored)(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=get_topic(Debtor.Opened),
        state=app.mapper.transcoder.encode(state),
    )
    event = app.mapper.to_domain_event(renamed)
    assert isinstance(event, Debtor.Opened)
    debtor = event.mutate(None)
    assert isinstance(debtor, Debtor)
    assert (debtor.name, debtor.currency) == ("Müller GmbH", "EUR")
    assert event.class_version == 2

    current = Debtor.open("Dupont SA", "CHF")
    again = app.mapper.to_domain_event(app.mapper.to_stored_event(current.collect_events()[0]))
    assert again.mutate(None).currency == "CHF"
