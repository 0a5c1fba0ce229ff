"""Generated passwords kept in a file only its owner can read, and URLs that carry them
(the embedded NATS server's users, the services' PostgreSQL roles)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from c360_platform.processes import atomic_write_text


def load_passwords(path: Path, names: Iterable[str]) -> dict[str, str]:
    """The password of each name, kept in `path` (mode 0600); missing ones are generated."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    passwords = {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
    missing = [name for name in names if name not in passwords]
    for name in missing:
        passwords[name] = secrets.token_urlsafe(24)
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(passwords, indent=2) + "\n")
        os.chmod(path, 0o600)
    return passwords


def url_for(url: str, user: str, password: str) -> str:
    """`url` (same server, same path) with `user`'s credentials: nats://erp:…@127.0.0.1:4222."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
