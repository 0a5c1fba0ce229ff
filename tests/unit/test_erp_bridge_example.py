"""The ERP stand-in (examples/erp_bridge.py) sends what its ledger keeps: amounts as typed,
never rounded, and no document c360 was not told of."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "examples" / "erp_bridge.py"
CUSTOMER = "0b6e2a4c-5d1f-4c36-9c36-5f0e6d7c8b9a"


@pytest.fixture(scope="module")
def bridge() -> ModuleType:
    spec = importlib.util.spec_from_file_location("erp_bridge_example", BRIDGE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("typed", "refusal"),
    [
        ("10.005", "at most two decimal places"),
        ("NaN", "is not a number"),
        ("Infinity", "is not a number"),
        ("1000000000000000", "at most 15 digits"),
        ("0", "more than zero"),
    ],
)
def test_an_amount_the_ledger_cannot_keep_as_typed_is_refused(
    bridge: ModuleType, typed: str, refusal: str
) -> None:
    with pytest.raises(bridge.BridgeError, match=refusal):
        bridge._amount(typed)


def test_an_amount_is_sent_as_typed(bridge: ModuleType) -> None:
    assert [bridge._amount(a) for a in ("1250", "12.5", "1e3", "0.01")] == [
        "1250.00",
        "12.50",
        "1000.00",
        "0.01",
    ]


def test_an_invoice_that_could_not_be_published_is_not_kept(
    bridge: ModuleType, tmp_path: Path
) -> None:
    db_path = tmp_path / "ledger.sqlite"
    with bridge.ledger(db_path) as db:
        bridge.open_debtor(db, "e1", CUSTOMER, "Dupont SA")
    # No c360 at this home: the publish fails.
    with pytest.raises(bridge.BridgeError, match=r"endpoints\.json does not exist"):
        bridge.issue_invoice(tmp_path / "no-c360", db_path, CUSTOMER, "100", "EUR", 30)
    with bridge.ledger(db_path) as db:
        assert db.execute("SELECT count(*) FROM invoices").fetchone()[0] == 0
