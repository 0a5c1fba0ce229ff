"""Who may call what: bearer tokens with a role, checked on every gRPC port.

A token is `c360.<payload>.<signature>`: the payload (base64url JSON) names the holder
(`sub`, an id such as "service:timeline" or "app:erp-bridge", never a person's name) and the
role; the signature is HMAC-SHA256 under the deployment's secret (`C360_AUTH_SECRET`), so
every service checks a token without a look-up. Roles:

- agent: read and write customer-facing data (every RPC unless it says otherwise)
- integration: read the event logs (ReadEvents), as ERP systems do
- operator: everything an agent may, plus rebuilds, merges and unmerges
- service: what one c360 service asks of another (reads, the event logs, commands)

An RPC states the roles it admits with `@requires(...)` on its servicer method; health checks
need no token; reflection needs any valid one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from c360_platform.errors import PermissionDenied, Unauthenticated

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)
PREFIX = "c360"
METADATA_KEY = "authorization"


class Role(StrEnum):
    AGENT = "agent"
    INTEGRATION = "integration"
    OPERATOR = "operator"
    SERVICE = "service"


DEFAULT_ROLES = frozenset({Role.AGENT, Role.OPERATOR, Role.SERVICE})
"""Who may call an RPC that states nothing: customer-facing reads and writes."""
ANY_ROLE = frozenset(Role)
SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
"""What a token's holder may be called: an id such as app:erp-bridge (letters, digits and
`._:/-`), never a person's name or e-mail; and nothing that could break the audit line it is
written into (no line breaks, no spaces)."""
_ROLES_ATTRIBUTE = "__c360_roles__"


def requires(*roles: Role) -> Callable[[F], F]:
    """Declare the roles that may call this servicer method."""

    def mark(method: F) -> F:
        setattr(method, _ROLES_ATTRIBUTE, frozenset(roles))
        return method

    return mark


def roles_of(servicer: object, method: str) -> frozenset[Role]:
    """The roles a servicer's method admits (DEFAULT_ROLES unless it says otherwise)."""
    found = getattr(getattr(servicer, method, None), _ROLES_ATTRIBUTE, None)
    return found if isinstance(found, frozenset) else DEFAULT_ROLES


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role


CALLER: ContextVar[Principal | None] = ContextVar("c360_caller", default=None)
"""The caller of the gRPC call being handled (set by the server's interceptor once it
admitted the call; None where no token is checked)."""


def caller_subject() -> str:
    """Who makes the call being handled: its token's subject (an id, never a person's name),
    or "" where calls carry no token (in-process tests)."""
    principal = CALLER.get()
    return principal.subject if principal is not None else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


VERIFIED_TOKENS = 1024
"""How many verified tokens an Authority remembers."""


class Authority:
    """Issues and checks the tokens of one deployment (one secret)."""

    def __init__(self, secret: str, *, revocations: Path | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("C360_AUTH_SECRET must be at least 32 characters")
        self._key = secret.encode()
        self._verified: dict[str, tuple[Principal, int | None, int]] = {}
        """Tokens whose signature and claims were checked: the same few callers send the same
        token on every call, so a call costs a look-up, not an HMAC and a JSON parse. The
        expiry and the revocations are checked on every call all the same."""
        self._revocations = Revocations(revocations) if revocations is not None else None

    @classmethod
    def from_env(cls) -> Authority | None:
        secret = os.environ.get("C360_AUTH_SECRET", "")
        return cls(secret, revocations=revocations_path()) if secret else None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, subject: str, role: Role, *, valid_for: float | None = None) -> str:
        if not SUBJECT.fullmatch(subject):
            raise ValueError(f"not a holder's id (such as app:erp-bridge): {subject!r}")
        claims: dict[str, Any] = {"sub": subject, "role": str(role), "iat": int(time.time())}
        if valid_for is not None:
            claims["exp"] = int(time.time() + valid_for)
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{PREFIX}.{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> Principal:
        """The holder of a valid token; Unauthenticated otherwise (never says which part)."""
        known = self._verified.get(token)
        if known is None:
            known = self._check(token)
            if len(self._verified) >= VERIFIED_TOKENS:
                self._verified.clear()  # many distinct tokens: start again, never grow
            self._verified[token] = known
        principal, expires, issued = known
        if expires is not None and expires < time.time():
            raise Unauthenticated("the token has expired; ask an operator for a new one")
        if self._revocations is not None and self._revocations.revoked(principal.subject, issued):
            raise Unauthenticated("the token was revoked; ask an operator for a new one")
        return principal

    def _check(self, token: str) -> tuple[Principal, int | None, int]:
        prefix, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if prefix != PREFIX or not payload or not signature:
            raise Unauthenticated("not a c360 bearer token")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise Unauthenticated("the token's signature does not match this deployment")
        try:
            claims = json.loads(_unb64(payload))
            role = Role(claims["role"])
            subject = claims["sub"]
            expires = claims.get("exp")
            issued = claims.get("iat", 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unauthenticated("the token's claims are not readable") from None
        # Checked, not assumed: a subject that could forge audit lines, or an expiry that is
        # no whole number (which would otherwise never expire), is no token of ours.
        if not isinstance(subject, str) or not SUBJECT.fullmatch(subject):
            raise Unauthenticated("the token's claims are not readable")
        if expires is not None and (type(expires) is not int):
            raise Unauthenticated("the token's claims are not readable")
        if type(issued) is not int:
            raise Unauthenticated("the token's claims are not readable")
        return Principal(subject, role), expires, issued

    def authorize(self, metadata: Iterable[tuple[str, Any]], allowed: frozenset[Role]) -> Principal:
        """The caller of an RPC that admits `allowed`, from its `authorization` metadata."""
        principal = self.authenticate(metadata)
        check_role(principal, allowed)
        return principal

    def authenticate(self, metadata: Iterable[tuple[str, Any]]) -> Principal:
        """The holder of the call's bearer token (Unauthenticated without a valid one)."""
        header = next((v for k, v in metadata if k == METADATA_KEY and isinstance(v, str)), "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "this call needs a bearer token (metadata 'authorization: Bearer <token>');"
                " `c360 token create --role ROLE` issues one"
            )
        return self.verify(token.strip())


def check_role(principal: Principal, allowed: frozenset[Role]) -> None:
    """PermissionDenied unless the principal's role is one of `allowed`."""
    if principal.role not in allowed:
        needed = ", ".join(sorted(allowed))
        raise PermissionDenied(f"role {principal.role} may not make this call (needs {needed})")


def expiry_of(token: str) -> int | None:
    """When a token expires (epoch seconds), read without checking it; None if it does not."""
    try:
        expires = json.loads(_unb64(token.split(".")[1])).get("exp")
    except (ValueError, IndexError, AttributeError):
        return None
    return expires if type(expires) is int else None


REVOCATIONS_ENV = "C360_REVOKED_TOKENS_FILE"
REVOCATIONS_CHECK_SECONDS = 2.0
"""How often a process looks whether the revocations file changed."""


def revocations_path() -> Path | None:
    """The revocations file a process's ports honour ($C360_REVOKED_TOKENS_FILE), if any."""
    value = os.environ.get(REVOCATIONS_ENV, "")
    return Path(value) if value else None


class Revocations:
    """Holders whose tokens issued up to a time are refused: {subject: epoch seconds} in a
    JSON file (`c360 token revoke`), read again within REVOCATIONS_CHECK_SECONDS of a change,
    so a leaked token is refused without a new secret (which would end every token)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._until: dict[str, int] = {}
        self._seen: tuple[int, int] | None = None
        self._next_look = 0.0

    def revoked(self, subject: str, issued: int) -> bool:
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + REVOCATIONS_CHECK_SECONDS
            self._reload()
        until = self._until.get(subject)
        return until is not None and issued <= until

    def _reload(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._until, self._seen = {}, None
            return
        except OSError as exc:  # unreadable now (its folder's mode): keep what was read
            _log.warning("revocations not read again: %s", exc)
            return
        seen = (info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return
        try:
            self._until = read_revocations(self.path)
        except (OSError, ValueError) as exc:  # half written, or broken: keep what was read
            _log.warning("revocations not read again: %s", exc)
            return
        self._seen = seen


def read_revocations(path: Path) -> dict[str, int]:
    """The file's {subject: epoch seconds}; ValueError if it is not such a document."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in document.items()
    ):
        raise ValueError(f"{path}: not a JSON object of holder -> epoch seconds")
    return document


def revoke(path: Path, subject: str) -> int:
    """Refuse from now on the tokens of `subject` issued up to this second; the time."""
    until = int(time.time())
    revoked = read_revocations(path)
    revoked[subject] = until
    _private_write(path, json.dumps(revoked, indent=2, sort_keys=True) + "\n")
    return until


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def _private_write(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600), in a directory only they may enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def home_secret(home: Path) -> str:
    """HOME/auth/secret (0600), created on first use: tokens issued stay valid across runs."""
    path = home / "auth" / "secret"
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if not found:
        found = new_secret()
        _private_write(path, found + "\n")
    return found


def write_role_tokens(home: Path, authority: Authority) -> None:
    """HOME/auth/<role>.token (0600) for the people at this machine: the CLI uses the
    operator's; agent and integration ones are there to hand to applications."""
    for role in (Role.OPERATOR, Role.AGENT, Role.INTEGRATION):
        _private_write(
            home / "auth" / f"{role}.token", authority.issue(f"local:{role}", role) + "\n"
        )


def home_token(home: Path, role: Role = Role.OPERATOR) -> str:
    try:
        return (home / "auth" / f"{role}.token").read_text().strip()
    except OSError:
        return ""


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((METADATA_KEY, f"Bearer {token}"),) if token else ()
