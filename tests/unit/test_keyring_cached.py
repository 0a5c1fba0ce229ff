"""`Keyring.cached`: the keys a keyring holds, answered without reading its table, or None
when any of them would have to be read (GetDataKeys then asks off the event loop)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from c360_platform.keyring import Keyring
from c360_platform.store import RowQuery


class Table:
    """The key table's rows, counting the reads."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.reads = 0

    def __call__(self, query: RowQuery) -> list[dict[str, Any]]:
        self.reads += 1
        return list(self.rows)


def test_held_keys_are_answered_without_a_read_and_others_give_none() -> None:
    stored, new, forgotten, unknown = (uuid.uuid4() for _ in range(4))
    table = Table([{"customer_id": stored, "key": b"k" * 32}])
    keyring = Keyring(table)
    made = keyring.create(new)["key"]  # being created: pending, not in the table yet
    keyring.forget(forgotten, datetime.now(UTC))

    assert keyring.cached([new, forgotten]) == {new: made, forgotten: None}
    assert keyring.cached([new, stored]) is None  # `stored` must be read
    assert table.reads == 0

    assert keyring.lookup([stored]) == {stored: b"k" * 32}  # one read, then held
    assert table.reads == 1
    assert keyring.cached([stored, new]) == {stored: b"k" * 32, new: made}
    assert keyring.cached([unknown]) is None
    assert table.reads == 1
