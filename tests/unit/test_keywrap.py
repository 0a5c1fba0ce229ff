"""Data keys wrapped under a key kept outside the database (`keywrap`): what is stored opens
only under its KEK and on its own row, keys stored before a KEK are read and wrapped at start,
a retired KEK's keys are wrapped again under the new one, and a key this process cannot open
stops the start, naming the KEK."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from c360_customer.application import CustomerApplication
from c360_platform import keywrap
from c360_platform.keyring import KEYS, Keyring, rewrap_stored
from c360_platform.keywrap import KeyWrap, KeyWrapError
from c360_platform.store import Ne, RowQuery

from .support import command_ctx


def kek() -> bytes:
    return os.urandom(32)


def text(*keks: bytes) -> str:
    return ",".join(base64.urlsafe_b64encode(k).decode() for k in keks)


@pytest.fixture(autouse=True)
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keywrap.ENV, raising=False)
    keywrap.from_env.cache_clear()
    yield
    keywrap.from_env.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(keywrap.ENV, value)
    keywrap.from_env.cache_clear()


def test_a_wrapped_key_opens_only_under_its_kek_and_on_its_own_row() -> None:
    old, new = kek(), kek()
    key, ada, bob = os.urandom(32), uuid.uuid4().bytes, uuid.uuid4().bytes
    stored = KeyWrap([old]).wrap(key, ada)
    assert len(stored) == keywrap.WRAPPED_BYTES
    assert key not in stored
    assert KeyWrap([old]).unwrap(stored, ada) == key
    assert KeyWrap([new, old]).unwrap(stored, ada) == key  # an older KEK still opens
    with pytest.raises(KeyWrapError, match="not this row's"):
        KeyWrap([old]).unwrap(stored, bob)
    with pytest.raises(KeyWrapError, match="which C360_KEY_WRAP_KEY does not hold"):
        KeyWrap([new]).unwrap(stored, ada)
    # A key stored before any KEK is itself, also one that happens to start like a wrapped one.
    assert KeyWrap([new]).unwrap(key, ada) == key
    assert KeyWrap([new]).unwrap(b"kw1" + key[3:], ada) == b"kw1" + key[3:]
    # Wrapped again under the current KEK only when it is not already.
    assert KeyWrap([old]).rewrapped(stored, ada) is None
    again = KeyWrap([new, old]).rewrapped(stored, ada)
    assert again is not None
    assert KeyWrap([new]).unwrap(again, ada) == key


def test_keks_are_read_from_the_variable_or_a_file_and_bad_ones_are_refused(
    tmp_path: Path,
) -> None:
    first, second = kek(), kek()
    by_text = KeyWrap.parse(text(first, second))
    path = tmp_path / "kek"
    path.write_text(f"{text(first)}\n{text(second)}\n")
    by_file = KeyWrap.parse(str(path))
    assert by_text.current == by_file.current == KeyWrap([first]).current
    assert by_text.ids() == by_file.ids()
    for bad in ("", "c2hvcnQ=", "not base64!"):
        with pytest.raises(ValueError, match="C360_KEY_WRAP_KEY"):
            KeyWrap.parse(bad)


def stored_keys(app: CustomerApplication) -> list[bytes]:
    return [
        bytes(r["key"])
        for r in app.rows(RowQuery(Ne("customer_id", uuid.UUID(int=0)), table=KEYS.name))
    ]


def register(app: CustomerApplication, name: str) -> uuid.UUID:
    outcome = app.register(
        command_ctx(name), kind="person", display_name=name, emails=[], phones=[], addresses=[]
    )
    return outcome.aggregate_id


def test_a_service_stores_keys_wrapped_rewraps_old_ones_and_refuses_without_its_kek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = CustomerApplication.in_memory()
    before = register(app, "Ada")  # no KEK yet: stored as it is
    [raw] = stored_keys(app)
    old, new = kek(), kek()
    use(monkeypatch, text(old))
    # The start wraps what was stored before, the index keys too.
    assert rewrap_stored(app.event_recorder, app.more_tables) >= 2
    assert rewrap_stored(app.event_recorder, app.more_tables) == 0
    after = register(app, "Bob")
    keys = stored_keys(app)
    assert all(k.startswith(KeyWrap([old]).prefix) for k in keys), keys
    assert raw not in b"".join(keys)
    fresh = Keyring(app.rows)
    assert fresh.lookup([before])[before] == raw
    assert app.get_customer(after).display_name == "Bob"
    # A new KEK first, the old one after: the start wraps every key under the new one.
    use(monkeypatch, text(new, old))
    assert rewrap_stored(app.event_recorder, app.more_tables) >= 3
    use(monkeypatch, text(new))
    assert Keyring(app.rows).lookup([before])[before] == raw
    # Without the KEK its keys are wrapped under, a service does not start.
    use(monkeypatch, text(old))
    with pytest.raises(KeyWrapError, match="does not hold"):
        rewrap_stored(app.event_recorder, app.more_tables)
    monkeypatch.delenv(keywrap.ENV)
    keywrap.from_env.cache_clear()
    with pytest.raises(KeyWrapError, match="is not set"):
        rewrap_stored(app.event_recorder, app.more_tables)
