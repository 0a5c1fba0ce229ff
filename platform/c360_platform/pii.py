"""Erasure by crypto-shredding: personal data is sealed with a key of the customer it belongs
to before it reaches a store, a stream or a read model; deleting the key erases it everywhere.

A sealed value is a string, so it fits every text field of a stored event and of a published
message: `pii1~<customer id, 32 hex>~<base64url(nonce | AES-256-GCM ciphertext)>~`, with the
customer id as associated data (a value cannot be moved to another customer). The `~` ends the
token, so tokens can be found inside longer texts (a timeline summary embeds them).

- `seal` / `reveal`: one value, and every token inside a text or a JSON-like structure.
- `Sealer`: the personal fields of each domain event class, by path (`display_name`,
  `emails[]`, `addresses[].lines[]`, `address.city`), sealed and revealed in an event's state.
- `BlindIndex`: keyed hashes of normalised values (e-mails, phones, name words), so that a
  store can find equal values without holding them.

Who holds the keys: the customer service, in a key table of its own store (`keyring.KEYS`; a
KMS can take its place later); consumers with the right role ask it for keys (`GetDataKeys`,
`datakeys`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.utils import get_topic

KEY_BYTES = 32
NONCE_BYTES = 12
FORGOTTEN = "[forgotten]"
"""What a sealed value reads as once its customer's key is deleted."""
TOKEN = re.compile(r"pii1~([0-9a-f]{32})~([A-Za-z0-9_-]+)~(?:(\d{1,4})~)?")
"""A sealed value, optionally followed by `<n>~`: reveal it cut to n characters (`clip`)."""

Keys = Mapping[UUID, bytes | None]
"""Customer id -> key (None: forgotten, or not known here)."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def is_sealed(text: str) -> bool:
    return text.startswith("pii1~") and TOKEN.fullmatch(text) is not None


def snippet(text: str, limit: int) -> str:
    """The text on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def clip(sealed: str, limit: int) -> str:
    """A sealed value marked to be revealed as its `snippet` of `limit` characters (a summary
    cannot cut a text it cannot read)."""
    match = TOKEN.fullmatch(sealed)
    if match is None:
        return snippet(sealed, limit)
    return f"pii1~{match.group(1)}~{match.group(2)}~{limit}~"


def seal(key: bytes, customer_id: UUID, text: str) -> str:
    """`text` sealed under the customer's key ("" and sealed values stay as they are).

    Deterministic (a synthetic nonce, the keyed hash of the text, as in SIV): one value of a
    customer always seals the same, so that an e-mail removed matches the one added and
    read models can compare values they cannot read. Only equality within one customer's
    values shows; different values never share a nonce."""
    return Sealing(key, customer_id)(text)


class Sealing:
    """`seal` for the values of one customer: its cipher and the keyed hash of the nonces
    are set up once for all of them (an event, a directory row seal several): 5.5 us a value
    after the first, 14 the first (`seal` was 17 a value)."""

    def __init__(self, key: bytes, customer_id: UUID) -> None:
        self._aad = customer_id.bytes
        self._head = f"pii1~{customer_id.hex}~"
        self._cipher = AESGCM(key)
        # The nonce: HMAC-SHA256(key, "c360 nonce\0" + text) (RFC 2104), its inner hash fed
        # the label already; `hmac.digest` set up an OpenSSL context for each value.
        block = _block_key(key)
        self._inner = _SHA256(block.translate(_IPAD) + b"c360 nonce\x00")
        self._outer = _SHA256(block.translate(_OPAD))

    def __call__(self, text: str) -> str:
        if not text or is_sealed(text):
            return text
        data = text.encode()
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        nonce = outer.digest()[:NONCE_BYTES]
        box = self._cipher.encrypt(nonce, data, self._aad)
        return self._head + base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode() + "~"


@functools.lru_cache(maxsize=4096)
def _customer(customer_hex: str) -> UUID:
    """The customer a sealed value names: made once per id (parsing one costs 1-4 us, and a
    page of entries names a few customers many times)."""
    return UUID(hex=customer_hex)


def _open(match: re.Match[str], keys: Keys) -> str:
    customer_id = _customer(match.group(1))
    key = keys.get(customer_id)
    if key is None:
        return FORGOTTEN
    body = match.group(2)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        text = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], customer_id.bytes)
    except (InvalidTag, ValueError, binascii.Error):
        return FORGOTTEN  # not sealed under this key: it cannot be read
    limit = match.group(3)
    return snippet(text.decode(), int(limit)) if limit else text.decode()


def reveal(text: str, keys: Keys) -> str:
    """`text` with every sealed value in it opened (FORGOTTEN where the key is gone)."""
    if "pii1~" not in text:
        return text
    return TOKEN.sub(lambda m: _open(m, keys), text)


def reveal_all(value: Any, keys: Keys) -> Any:
    """A JSON-like value (dicts, lists, strings) with every sealed string in it opened."""
    if isinstance(value, str):
        return reveal(value, keys)
    if isinstance(value, dict):  # keys too: a profile's provenance paths name values
        return {
            (reveal(k, keys) if isinstance(k, str) else k): reveal_all(v, keys)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [reveal_all(v, keys) for v in value]
    return value


def reveal_items(items: list[Any], keys: Keys) -> list[Any]:
    """`reveal_all` of each item, where the item holds a sealed value; one that holds none
    is left as it is. Whether it does is one look at its JSON text (C speed), not a walk in
    Python: most entries of a timeline page hold none, and walking them all was a tenth of
    the page's CPU."""
    return [reveal_item(item, keys) for item in items]


def reveal_item(item: Any, keys: Keys) -> Any:
    """One item of `reveal_items`."""
    return reveal_all(item, keys) if holds_sealed(item) else item


def holds_sealed(value: Any) -> bool:
    """Whether a JSON-like value may hold a sealed value (one look at its JSON text); True
    also for text that only looks like the start of one, which revealing leaves as it is."""
    text = _scan_text(value)
    return text is None or "pii1~" in text  # None: JSON cannot write it; walked


def _scan_text(value: Any) -> str | None:
    """The value as JSON text (C speed), other values (times, ids) as their text, which holds
    no sealed value: one scan of one string instead of a walk in Python. None: keys JSON
    cannot write (a tuple)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError):
        return None


def subjects(value: Any) -> set[UUID]:
    """The customers whose keys the sealed values in a JSON-like value name."""
    text = _scan_text(value)
    if text is None:
        return _subjects_walk(value)
    if "pii1~" not in text:
        return set()
    return {_customer(m.group(1)) for m in TOKEN.finditer(text)}


def _subjects_walk(value: Any) -> set[UUID]:
    found: set[UUID] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "pii1~" in item:
                found.update(_customer(m.group(1)) for m in TOKEN.finditer(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if isinstance(k, str))
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


# -- personal fields of domain events -----------------------------------------------------------


Step = tuple[str, bool]
"""A part of a personal field's path: a key, and whether the key names a list."""


def _steps(path: str) -> tuple[Step, ...]:
    return tuple((part.removesuffix("[]"), part.endswith("[]")) for part in path.split("."))


def _apply(value: Any, steps: tuple[Step, ...], change: Callable[[str], str]) -> Any:
    """`value` with `change` applied to the strings `steps` name (a copy where it changes:
    the value may be shared with the domain event it came from)."""
    if not steps:
        return change(value) if isinstance(value, str) else value
    name, many = steps[0]
    if not isinstance(value, dict) or name not in value:
        return value
    return {**value, name: _inner(value[name], many, steps[1:], change)}


def _inner(value: Any, many: bool, rest: tuple[Step, ...], change: Callable[[str], str]) -> Any:
    if many:
        return [_apply(item, rest, change) for item in value or []]
    return _apply(value, rest, change)


class Sealer:
    """The personal fields of domain events, by event class: sealed in an event's state
    before it is stored, revealed when it is read back."""

    def __init__(
        self,
        fields: Mapping[type, Iterable[str]],
        *,
        owner: str = "",
        own: Iterable[type] = (),
        owners: Mapping[type, str] | None = None,
    ) -> None:
        self.paths = {get_topic(cls): [_steps(p) for p in paths] for cls, paths in fields.items()}
        self.owner_field = owner
        """The event field naming the customer whose key seals it ("": the aggregate's id,
        as for the customer's own events)."""
        self.owner_fields = {get_topic(cls): name for cls, name in (owners or {}).items()}
        """`owner_field` of the events of these classes: an event of one customer's
        aggregate whose personal data is another's (an organisation's contact person's role
        is the person's: sealed under the person's key, it goes with the person's erasure)."""
        self.own_prefixes = tuple(f"{get_topic(cls)}." for cls in own)
        """Events of these aggregates about no customer are sealed with the aggregate's own
        id as their subject: the aggregate is about a person who is no customer (yet), such
        as a prospect's lead, and the service keeps that key itself."""

    def owner(self, state: Mapping[str, Any], originator_id: UUID, topic: str = "") -> UUID | None:
        """The data subject whose key seals an event of this state: the customer it names,
        else (for an aggregate of `own`) the aggregate itself; None: about nobody."""
        field = self.owner_fields.get(topic, self.owner_field)
        if not field:
            return originator_id
        named = str(state.get(field) or "")
        if not named and topic.startswith(self.own_prefixes):
            return originator_id
        try:
            return UUID(named)
        except ValueError:
            return None

    def personal(self, topic: str) -> bool:
        return topic in self.paths

    def change(self, topic: str, state: dict[str, Any], change: Callable[[str], str]) -> None:
        """Apply `change` to the personal strings of an event's state, in place (its own
        keys; what they hold is copied where it changes)."""
        for steps in self.paths.get(topic, ()):
            name, many = steps[0]
            if name in state:
                state[name] = _inner(state[name], many, steps[1:], change)


# -- blind indexes ------------------------------------------------------------------------------


def _sha256_constructor() -> Callable[..., Any]:
    """CPython's own SHA-256 (`_sha2` from 3.12, `_sha256` before), else hashlib's. Copying
    one of its objects is a copy of a small struct; OpenSSL 3's digests and HMACs cost a few
    microseconds a context, more than hashing a search term."""
    for name in ("_sha2", "_sha256"):
        with contextlib.suppress(ImportError, AttributeError):
            found: Callable[..., Any] = importlib.import_module(name).sha256
            return found
    return hashlib.sha256


_SHA256 = _sha256_constructor()
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


SHORT_TOKEN = 4
"""Values of at most this many characters have their search tokens kept (`BlindIndex.token`):
a name's first letters, which most profiles share with others ("m", "ma", "mar", "mari"),
and which name nobody."""
SHORT_TOKENS_KEPT = 100_000
"""At most this many short values' tokens kept per index (past it, they are made each time)."""


def _block_key(key: bytes) -> bytes:
    """An HMAC key as one block of SHA-256 (RFC 2104: hashed if longer, padded with zeros)."""
    block = _SHA256().block_size
    return (_SHA256(key).digest() if len(key) > block else key).ljust(block, b"\0")


class BlindIndex:
    """Keyed hashes of values: equal values give equal hashes, and the hashes say nothing of
    the values without the index key (which stays in the service that owns the index).

    HMAC-SHA256 (RFC 2104), with the key's inner and outer states made once and copied per
    value: a value is two copies, two updates and two digests, all in C. The `hmac` module's
    own object does the same through three layers of Python methods per value (3.2 against
    2.1 us a search term); a new profile's search columns take some forty values."""

    def __init__(self, key: bytes) -> None:
        block = _block_key(key)
        self._inner = _SHA256(block.translate(_IPAD))
        self._outer = _SHA256(block.translate(_OPAD))
        self._short: dict[str, int] = {}
        """Tokens of values of at most SHORT_TOKEN characters, by value."""

    def _mac(self, value: str) -> bytes:
        inner = self._inner.copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac: bytes = outer.digest()
        return mac

    def __call__(self, value: str) -> str:
        return "bi1~" + self._mac(value)[:16].hex()

    def all(self, values: Iterable[str]) -> list[str]:
        return [self(v) for v in values if v]

    def token(self, value: str) -> int:
        """`value`'s search token: the first eight bytes of its HMAC (the text form's first
        sixteen hex digits) as a signed 64-bit integer, a PostgreSQL bigint. A store that
        keeps many per row and indexes them (the timeline's search columns, some forty a
        profile) holds a quarter of the text form's bytes, and its GIN indexes compare
        integers, not collated text. A false match needs another stored value's token to be
        the searched one's: at a million distinct values in an index, about one search in
        2e13.

        A short value's token is kept (SHORT_TOKEN): of the forty-odd tokens of a profile's
        name prefixes, those of its words' first letters are the ones most profiles share."""
        if len(value) > SHORT_TOKEN:
            return int.from_bytes(self._mac(value)[:8], "big", signed=True)
        token = self._short.get(value)
        if token is None:
            token = int.from_bytes(self._mac(value)[:8], "big", signed=True)
            if len(self._short) < SHORT_TOKENS_KEPT:
                self._short[value] = token
        return token

    def tokens(self, values: Iterable[str]) -> list[int]:
        return [self.token(v) for v in values if v]
