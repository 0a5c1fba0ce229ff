"""Platform pieces with no I/O: tokens, validation, error mapping."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvloop
from google.rpc import error_details_pb2
from hypothesis import given
from hypothesis import strategies as st

from c360_platform import defer_import, telemetry
from c360_platform.consistency import ConsistencyToken
from c360_platform.errors import (
    InvalidArgument,
    NotFound,
    PreconditionFailed,
    VersionConflict,
    require_state,
)
from c360_platform.pgstore import _json_value, json_loads, json_rows
from c360_platform.rpc import loop_factory, status_for
from c360_platform.validation import Violations


def test_consistency_token_round_trip() -> None:
    token = ConsistencyToken("customer", 42)
    assert str(token) == "customer:42"
    assert ConsistencyToken.parse("customer:42") == token
    with pytest.raises(InvalidArgument, match="wait_for"):
        ConsistencyToken.parse("customer;42")


def test_email_and_phone_normalisation() -> None:
    v = Violations()
    assert v.email("email", " Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert v.phone("phone", "030 901820", "DE") == "+4930901820"
    assert v.phone("phone", "+44 20 7946 0958") == "+442079460958"
    assert v.phone("phone", "0049 30 901820") == "+4930901820"
    v.check()
    v.email("email", "ada@")
    v.phone("phone", "+49 1")
    with pytest.raises(InvalidArgument) as caught:
        v.check()
    assert [str(x) for x in caught.value.violations] == [
        "email: not a valid address",
        "phone: not a valid phone number",
    ]


def test_a_number_without_country_code_needs_its_country() -> None:
    v = Violations()
    v.phone("phones[0]", "(202) 555-0143")
    v.phone("phone", "202 555 0143", "usa")
    with pytest.raises(InvalidArgument) as caught:
        v.check()
    assert [x.field for x in caught.value.violations] == ["phones[0]", "default_region"]
    assert "country code" in caught.value.violations[0].description
    assert "default_region" in caught.value.violations[0].description
    assert Violations().phone("phone", "(202) 555-0143", "us") == "+12025550143"


def test_a_default_region_that_is_no_country_is_named_whatever_the_number() -> None:
    """A region "XX" was refused as the number's fault ("phones[0]: not a valid phone
    number"), and beside a number with its country code ("+49 …") it passed unnoticed."""
    v = Violations()
    v.phone("phones[0]", "030 901820", "XX")
    v.phone("phones[1]", "+49 30 901820", "XX")
    v.phone("phone", "+49 30 901820", "qq")
    with pytest.raises(InvalidArgument) as caught:
        v.check()
    assert [str(x) for x in caught.value.violations] == [
        "default_region: must be an ISO 3166-1 alpha-2 code of a country, such as DE"
    ]
    assert Violations().phone("phone", "+49 30 901820", "de") == "+4930901820"


def test_names_are_nfc_and_free_of_invisible_and_direction_characters() -> None:
    v = Violations()
    decomposed = "Ja\u0304nis"  # "ā" as a plus a combining macron
    assert v.name("display_name", decomposed) == "J\u0101nis"
    v.check()
    v.name("display_name", "Ann\u202eatsoc")
    v.name("contact", "A\u200bnn")
    with pytest.raises(InvalidArgument) as caught:
        v.check()
    assert [x.field for x in caught.value.violations] == ["display_name", "contact"]


def test_a_day_is_yyyy_mm_dd_in_the_years_a_caller_may_name() -> None:
    """One reading of a calendar day for every service: contracts, campaigns, sales' dates."""
    v = Violations()
    assert v.day("on", " 1900-01-01 ") == date(1900, 1, 1)
    assert v.day("on", "2999-12-31") == date(2999, 12, 31)
    assert v.day("on", "", required=False) is None
    assert v.items == []
    for text, says in [
        ("", "is required (YYYY-MM-DD)"),
        ("20270101", "must be a date as YYYY-MM-DD"),  # fromisoformat would read it
        ("2027-W01-1", "must be a date as YYYY-MM-DD"),
        ("2026-02-30", "must be a date as YYYY-MM-DD"),
        ("1899-12-31", "must be a date in the years 1900 to 2999"),
        ("9999-12-31", "must be a date in the years 1900 to 2999"),
    ]:
        v = Violations()
        assert v.day("starts_on", text) is None, text
        assert [(x.field, x.description) for x in v.items] == [("starts_on", says)], text


def test_a_refused_state_change_reads_as_a_sentence() -> None:
    for action, says in [
        ("publish", "ticket t1 is closed: cannot publish it (only when open)"),
        ("put it on hold", "ticket t1 is closed: cannot put it on hold (only when open)"),
    ]:
        with pytest.raises(PreconditionFailed) as refused:
            require_state("ticket", "t1", "closed", action, ["open"])
        assert str(refused.value) == says
    require_state("article", "a1", "draft", "publish", ["draft"])  # allowed: nothing raised


def test_currencies_countries_and_decimals_are_read_by_one_rule() -> None:
    v = Violations()
    assert v.currency("c", " huf ") == "HUF"
    assert v.currency("c", "", default="EUR") == "EUR"
    assert v.currency("c", "eur", among={"EUR", "USD"}) == "EUR"
    assert v.country("country", "gb") == "GB"
    assert v.decimal("d", "-12.5", negative=True) == Decimal("-12.5")
    assert v.decimal("d", "", required=False) is None
    assert v.items == []
    iso4217 = "must be an ISO 4217 code such as EUR"
    number = "must be a decimal number such as 1250.00 (at most 15 digits before the point and 4"
    checks: list[tuple[Callable[[Violations], object], str]] = [
        (lambda c: c.currency("c", "XXQ"), iso4217),
        (lambda c: c.currency("c", "EURO"), iso4217),
        (
            lambda c: c.currency("c", "HUF", among={"EUR", "USD"}),
            "unknown currency; one of EUR, USD",
        ),
        (lambda c: c.country("c", "UK"), "must be an ISO 3166-1 alpha-2 code such as DE"),
        (lambda c: c.decimal("c", "1e3"), f"{number} after it)"),
        (lambda c: c.decimal("c", "0.00001"), f"{number} after it)"),
        (lambda c: c.decimal("c", "-1"), "must not be negative"),
    ]
    for check, says in checks:
        v = Violations()
        check(v)
        assert [(x.field, x.description) for x in v.items] == [("c", says)]


def test_client_mistakes_never_map_to_internal() -> None:
    code, _, status = status_for(InvalidArgument.one("email", "not a valid address"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [(f.field, f.description) for f in bad.field_violations] == [
        ("email", "not a valid address")
    ]
    assert status_for(NotFound("x"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(VersionConflict("x"))[0] == grpc.StatusCode.ABORTED
    assert status_for(RuntimeError("boom"))[0] == grpc.StatusCode.INTERNAL


def test_tracing_stays_off_without_otel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setattr(telemetry, "_configured", False)
    assert telemetry.configure("quiet") is False
    assert telemetry.current_trace_headers() == ("", "")


def test_grpc_fork_handlers_are_off_in_c360_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set when c360_platform is imported, before gRPC starts: children forked from a process
    # running gRPC must not run gRPC's fork handlers between fork and exec.
    import importlib
    import os

    import c360_platform

    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    importlib.reload(c360_platform)
    assert os.environ["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "true")
    importlib.reload(c360_platform)
    assert os.environ["GRPC_ENABLE_FORK_SUPPORT"] == "true"  # an operator's choice stands


_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # past 64 bits too: written by `json` then
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.binary(max_size=8),
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)


@given(st.lists(st.dictionaries(st.text(max_size=4), _json_values, max_size=5), max_size=4))
def test_json_rows_writes_what_the_standard_encoder_wrote(rows: list[dict[str, Any]]) -> None:
    # orjson writes the batched statements' parameter; PostgreSQL must read the same values
    # from it as from the standard library's text (ids, times, amounts, bytes alike).
    expected = json.dumps(rows, separators=(",", ":"), default=_json_value)
    assert json.loads(json_rows(rows, _json_value)) == json.loads(expected)


_json_read = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),  # past 64 bits too: read by `json` then
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False),  # infinity as 1e400, in the text below
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_read)
def test_json_loads_reads_what_the_standard_decoder_reads(value: Any) -> None:
    text = json.dumps(value).replace("Infinity", "1e400")
    expected = json.loads(text)
    for data in (text, text.encode(), memoryview(text.encode())):
        read = json_loads(data)
        assert read == expected
        assert json.dumps(read) == json.dumps(expected)  # 1 stays 1, not 1.0


def test_json_loads_refuses_what_the_standard_decoder_refuses() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        json_loads(b'{"a": ')


def test_json_rows_refuses_what_a_query_table_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot hold object"):
        json_rows([{"x": object()}], _json_value)


PROBE = """
import os
os.environ["C360_PROBE_RUNS"] = str(int(os.environ.get("C360_PROBE_RUNS", "0")) + 1)
VALUE = 42
"""


def test_a_deferred_module_runs_once_on_the_first_read_of_an_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c360_probe_module.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("C360_PROBE_RUNS", raising=False)
    monkeypatch.delitem(sys.modules, "c360_probe_module", raising=False)
    defer_import("c360_probe_module")
    try:
        import c360_probe_module  # type: ignore[import-not-found]

        assert "C360_PROBE_RUNS" not in os.environ  # imported, not run
        assert c360_probe_module.VALUE == 42
        assert os.environ["C360_PROBE_RUNS"] == "1"
        import c360_probe_module as again

        assert again.VALUE == 42
        assert type(sys.modules["c360_probe_module"]) is types.ModuleType  # the real one now
        assert os.environ["C360_PROBE_RUNS"] == "1"
    finally:
        sys.modules.pop("c360_probe_module", None)
    defer_import("c360_no_such_module")
    assert "c360_no_such_module" not in sys.modules


def test_nats_is_imported_without_its_websocket_dependency() -> None:
    # aiohttp (~0.4 s of CPU per process) is loaded only if a ws:// connection uses it.
    code = "import c360_platform, nats, sys; print(type(sys.modules.get('aiohttp')).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("_Deferred", "NoneType")


def test_a_service_process_runs_on_uvloop_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("C360_EVENT_LOOP", raising=False)
    factory = loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    monkeypatch.setenv("C360_EVENT_LOOP", "asyncio")
    assert loop_factory() is None
    monkeypatch.setenv("C360_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="C360_EVENT_LOOP"):
        loop_factory()


def test_c360s_clients_read_replies_larger_than_grpcs_default() -> None:
    from c360_platform.channels import RECEIVE_LIMIT, _with_limit

    assert ("grpc.max_receive_message_length", RECEIVE_LIMIT) in _with_limit([])
    assert RECEIVE_LIMIT > 4 << 20
    given = [("grpc.max_receive_message_length", 1 << 20), ("grpc.enable_http_proxy", 0)]
    assert _with_limit(given) == given  # a caller's own limit wins
