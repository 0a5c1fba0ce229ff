"""Data keys wrapped under a key kept outside PostgreSQL (a key-encryption key, "KEK").

A customer's data key seals its personal data; deleting the key erases the data (crypto-
shredding, see `pii`). The keys live in the key holder's table (`keyring.KEYS`), and a deleted
row's bytes stay in PostgreSQL's files, its WAL and every backup taken before the erasure
until they are overwritten. Wrapped under a KEK that is not in the database, what those
copies hold is useless without it: a stolen backup or disk reads no personal data, and once
a KEK is retired (the keys wrapped again under a new one, the old one destroyed) the erased
customers' keys in older backups cannot be opened by anyone.

`C360_KEY_WRAP_KEY` names the KEKs: base64 (standard or URL-safe) of 32 random bytes each,
separated by commas or new lines, the first the current one; or the path of a file holding
them. Every key written is wrapped under the current one; keys wrapped under another of them
(or stored unwrapped, before a KEK was set) are read, and wrapped again under the current one
as the service starts (`rewrap`). A wrapped key is
`kw1` | the KEK's id (the first 8 bytes of its SHA-256) | a 12-byte nonce | AES-256-GCM of the
key, with the row's subject (a customer id, a key's name) as associated data: a wrapped key
copied onto another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENV = "C360_KEY_WRAP_KEY"
MAGIC = b"kw1"
KEK_BYTES = 32
ID_BYTES = 8
NONCE_BYTES = 12
PREFIX_BYTES = len(MAGIC) + ID_BYTES


class KeyWrapError(RuntimeError):
    """A stored key this process cannot open: wrapped under a KEK it was not given, or not
    a key at all. A deployment error, named at start (`rewrap`), not a caller's."""


def new_kek() -> str:
    """A new KEK, as `C360_KEY_WRAP_KEY` takes it."""
    return base64.urlsafe_b64encode(os.urandom(KEK_BYTES)).decode()


def home_kek(home: Path) -> Path:
    """The KEK file of a `c360 up` state folder (HOME/keys/kek, 0600), made on first use:
    beside the database, not in it (a copy of the database alone opens no key; keep the file
    out of the database's backups, and with the backups you would restore)."""
    path = home / "keys" / "kek"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_kek() + "\n")
    return path


def _kek_id(kek: bytes) -> bytes:
    return hashlib.sha256(kek).digest()[:ID_BYTES]


def _decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != KEK_BYTES:
        raise ValueError(
            f"{ENV}: each key must be base64 of {KEK_BYTES} random bytes"
            " (`c360 ops secrets` or `python -c 'import os,base64;"
            " print(base64.urlsafe_b64encode(os.urandom(32)).decode())'` makes one)"
        )
    return raw


class KeyWrap:
    """Wraps data keys under the current KEK and opens them under any of the KEKs given."""

    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise ValueError(f"{ENV}: no key")
        self._ciphers = {_kek_id(k): AESGCM(k) for k in keks}
        self.current = _kek_id(keks[0])
        self.prefix = MAGIC + self.current
        """What every key wrapped under the current KEK starts with."""

    @classmethod
    def parse(cls, text: str) -> KeyWrap:
        """From `C360_KEY_WRAP_KEY`'s value: the keys, or a file's path holding them."""
        value = text.strip()
        if value and not any(c in value for c in ",\n") and Path(value).is_file():
            value = Path(value).read_text().strip()
        parts = [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]
        return cls([_decode(p) for p in parts])

    def wrap(self, key: bytes, subject: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self.prefix + nonce + self._ciphers[self.current].encrypt(nonce, key, subject)

    def unwrap(self, stored: bytes, subject: bytes) -> bytes:
        """The key `stored` holds: wrapped under one of the KEKs, or (written before a KEK
        was set) the key itself."""
        if not is_wrapped(stored):
            return stored
        cipher = self._ciphers.get(stored[len(MAGIC) : PREFIX_BYTES])
        if cipher is None:
            raise KeyWrapError(
                f"a data key is wrapped under KEK {stored[len(MAGIC) : PREFIX_BYTES].hex()},"
                f" which {ENV} does not hold (it holds {', '.join(self.ids())})"
            )
        body = stored[PREFIX_BYTES:]
        try:
            return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], subject)
        except InvalidTag:
            raise KeyWrapError("a wrapped data key does not open: not this row's") from None

    def rewrapped(self, stored: bytes, subject: bytes) -> bytes | None:
        """`stored` wrapped under the current KEK, or None if it is already."""
        if stored.startswith(self.prefix):
            return None
        return self.wrap(self.unwrap(stored, subject), subject)

    def ids(self) -> list[str]:
        return [i.hex() for i in self._ciphers]


WRAPPED_BYTES = PREFIX_BYTES + NONCE_BYTES + 32 + 16
"""A wrapped data key's length (a key of 32 bytes and the 16-byte tag): a key stored as it is
has 32, so one that happens to start with `kw1` is not taken for a wrapped one."""


def is_wrapped(stored: bytes) -> bool:
    return len(stored) == WRAPPED_BYTES and stored.startswith(MAGIC)


@cache
def from_env() -> KeyWrap | None:
    """This process's KEKs (`C360_KEY_WRAP_KEY`), or None when it has none: keys are then
    stored as they are, and a key found wrapped cannot be read (`rewrap` refuses to start)."""
    text = os.environ.get(ENV, "")
    return KeyWrap.parse(text) if text.strip() else None


def wrap(key: bytes, subject: bytes, kw: KeyWrap | None = None) -> bytes:
    """`key` as stored: wrapped under the current KEK of this process, if it has one."""
    kw = kw if kw is not None else from_env()
    return kw.wrap(key, subject) if kw is not None else key


def unwrap(stored: bytes, subject: bytes, kw: KeyWrap | None = None) -> bytes:
    """The key a stored value holds (KeyWrapError if wrapped under a KEK this process has not)."""
    kw = kw if kw is not None else from_env()
    if kw is not None:
        return kw.unwrap(stored, subject)
    if is_wrapped(stored):
        raise KeyWrapError(f"a data key is wrapped under a KEK, and {ENV} is not set")
    return stored
