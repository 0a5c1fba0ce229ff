"""The timeline's source plug-ins: every published payload has a summary, and a new source is
one new module in c360_timeline.sources, found without an edit anywhere else."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message,
    message_factory,
    symbol_database,
)

import c360.events.v1
from c360.erp.v1 import erp_events_pb2
from c360.events.v1 import envelope_pb2
from c360_platform.envelope import Publication, pack
from c360_timeline import sources
from c360_timeline.projection import (
    ChurnRule,
    empty_profile,
    entry_for,
    fold,
    join_profile,
    observe,
    registry,
)
from c360_timeline.query import profile_message

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def published_payloads() -> set[str]:
    """The full names of every payload c360 publishes or takes in: the top-level messages of
    the c360.events.v1 *_events.proto files that no message there uses as a field's type, and
    the cases of c360.erp.v1.ErpEvent.event."""
    files = []
    for module in pkgutil.iter_modules(c360.events.v1.__path__):
        imported = importlib.import_module(f"c360.events.v1.{module.name}")
        descriptor = getattr(imported, "DESCRIPTOR", None)
        if descriptor is not None and descriptor.name.endswith("_events.proto"):
            files.append(descriptor)
    messages = [m for f in files for m in f.message_types_by_name.values()]
    parts = {
        field.message_type.full_name
        for m in messages
        for field in m.fields
        if field.message_type is not None
    }
    erp = erp_events_pb2.ErpEvent.DESCRIPTOR.oneofs_by_name["event"].fields
    return {m.full_name for m in messages if m.full_name not in parts} | {
        field.message_type.full_name for field in erp if field.message_type is not None
    }


def test_every_published_payload_has_a_timeline_summary() -> None:
    payloads = published_payloads()
    assert {"c360.events.v1.CustomerRenamed", "c360.events.v1.TicketRated"} <= payloads
    assert "c360.erp.v1.InvoiceIssued" in payloads
    assert "c360.events.v1.PostalAddress" not in payloads  # a part of a payload
    assert "c360.events.v1.ConsentConflict" not in payloads
    missing = payloads - set(registry().summaries)
    assert not missing, f"no source plug-in summarises {sorted(missing)}"


# -- a new source: one module -------------------------------------------------------------------


def _loyalty_payloads() -> dict[str, type[message.Message]]:
    """Payload types of a source c360 does not have (loyalty points), made up for the test."""
    file = descriptor_pb2.FileDescriptorProto(
        name="c360/test/loyalty_events.proto", package="c360.test.loyalty.v1", syntax="proto3"
    )
    fields = {"PointsEarned": ("points", "reason"), "PointsDisputed": ("points", "channel")}
    for name, (amount, text) in fields.items():
        payload = file.message_type.add(name=name)
        payload.field.add(
            name=amount, number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32
        )
        payload.field.add(name=text, number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.Add(file)
    classes = {}
    for name in fields:
        cls = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"c360.test.loyalty.v1.{name}")
        )
        symbol_database.Default().RegisterMessage(cls)
        classes[name] = cls
    return classes


LOYALTY = '''"""Loyalty points (source `loyalty`): the `loyalty` part of the profile."""

from c360_timeline.projection import Doc, Entry, SourcePlugin, SupportContact, set_by


def _earned_summary(d: Doc) -> str:
    return f"Earned {d['points']} points: {d['reason']}"


def _earned(p: Doc, entry: Entry) -> None:
    p["loyalty"]["points"] += entry.details["points"]
    set_by(p, "loyalty.points", entry)


def _disputed(p: Doc, entry: Entry) -> None:
    p["loyalty"]["disputes"] += 1


def _join(p: Doc, other: Doc) -> None:
    p["loyalty"]["points"] += other["loyalty"]["points"]
    p["loyalty"]["disputes"] += other["loyalty"]["disputes"]


def _support_contact(entry: Entry) -> SupportContact | None:
    if entry.type != "points.disputed":
        return None
    return SupportContact("points_disputed", entry.details["channel"])


PLUGIN = SourcePlugin(
    name="loyalty",
    summaries={
        "c360.test.loyalty.v1.PointsEarned": _earned_summary,
        "c360.test.loyalty.v1.PointsDisputed": lambda d: f"Disputed {d['points']} points",
    },
    folds={"points.earned": _earned, "points.disputed": _disputed},
    section="loyalty",
    empty_section=lambda: {"points": 0, "disputes": 0},
    join=_join,
    support_contact=_support_contact,
)
'''


@pytest.fixture
def new_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], None]]:
    """Writes a module into a directory that the sources package also holds, as if it had been
    added to c360_timeline/sources/; the plug-ins are found again on next use."""
    monkeypatch.setattr(sources, "__path__", [*sources.__path__, str(tmp_path)])
    written: list[str] = []

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.py").write_text(text)
        written.append(name)
        importlib.invalidate_caches()
        registry.cache_clear()

    yield write
    registry.cache_clear()
    for name in written:
        sys.modules.pop(f"{sources.__name__}.{name}", None)


def _points(customer: str, payload: message.Message, position: int) -> envelope_pb2.Envelope:
    return pack(
        source="loyalty",
        publication=Publication("points", customer, payload),
        aggregate_id=uuid.UUID(customer),
        aggregate_version=position,
        position=position,
        occurred_at=T0 + timedelta(days=position),
    )


def test_a_new_source_is_one_new_module(new_source: Callable[[str, str], None]) -> None:
    payloads = _loyalty_payloads()
    new_source("loyalty", LOYALTY)
    assert {p.name for p in registry().plugins} == {
        "customer",
        "service-desk",
        "erp",
        "marketing",
        "sales",
        "loyalty",
    }

    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    history = [
        payloads["PointsEarned"](points=120, reason="first order"),
        payloads["PointsEarned"](points=30, reason="review"),
        payloads["PointsDisputed"](points=30, channel="phone"),
    ]
    entries = [entry_for(_points(ada, payload, i)) for i, payload in enumerate(history, start=1)]
    assert [(e.type, e.summary) for e in entries] == [
        ("points.earned", "Earned 120 points: first order"),
        ("points.earned", "Earned 30 points: review"),
        ("points.disputed", "Disputed 30 points"),
    ]

    rule = ChurnRule(threshold=1)
    profile = empty_profile(ada)
    derived = []
    for entry in entries:
        profile = fold(profile, entry)
        derived += observe(profile, entry, rule)
    assert profile["loyalty"] == {"points": 150, "disputes": 1}
    assert profile["provenance"]["loyalty.points"]["event_id"] == entries[1].event_id
    assert profile["touches"]["loyalty"]["count"] == 3
    assert profile["last_contact_source"] == "loyalty"
    assert [d.type for d in derived] == ["customer.at_risk_flagged"]  # the dispute
    assert profile["churn"]["contacts"][0]["contact"] == "points_disputed"

    shown = profile_message(profile, T0 + timedelta(days=4))
    assert json_format.MessageToDict(shown.attributes)["loyalty"] == {"points": 150, "disputes": 1}
    assert shown.at_risk
    assert not shown.HasField("service_desk")

    theirs = fold(empty_profile(bob), entry_for(_points(bob, history[0], 9)))
    assert join_profile(profile, theirs)["loyalty"] == {"points": 270, "disputes": 1}


def test_two_plug_ins_cannot_claim_one_payload(new_source: Callable[[str, str], None]) -> None:
    new_source(
        "tickets_again",
        "from c360_timeline.projection import SourcePlugin\n\n"
        "PLUGIN = SourcePlugin(name='tickets-again',"
        " summaries={'c360.events.v1.TicketOpened': lambda d: 'Opened'})\n",
    )
    with pytest.raises(ValueError, match=r"claims the payload c360\.events\.v1\.TicketOpened"):
        registry()


def test_a_module_without_a_plug_in_is_refused(new_source: Callable[[str, str], None]) -> None:
    new_source("notes", '"""Forgot to declare PLUGIN."""\n')
    with pytest.raises(TypeError, match=r"sources\.notes declares no PLUGIN"):
        registry()
