"""Who may call what: bearer tokens with a role, checked on every gRPC port.

A token is `c360.<payload>.<signature>`: the payload (base64url JSON) names the holder
(`sub`, an id such as "service:timeline" or "app:erp-bridge", never a person's name), the
role and the algorithm (`"alg": "Ed25519"`); the signature is Ed25519 under the deployment's
signing key. Only whoever issues tokens holds that key (`SigningKey`: `c360 up` keeps it in
HOME/auth/signing.pem, 0600; on Kubernetes it is the operator's Secret c360-auth-signing,
which no pod mounts). Every service checks tokens with the public key alone
(C360_AUTH_PUBLIC_KEY), which cannot sign one, and calls the others with a token of its own
(C360_TOKEN): taking over one service gives no way to mint an operator's token.

Before, tokens were signed with HMAC-SHA256 under one secret every service held
(C360_AUTH_SECRET, no `alg` in the payload). A process that still has that secret accepts
such tokens (and says at start how to move on), so a deployment moves to the key pair
without downtime (deploy/README.md, "Moving to signed tokens"). Roles:

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
from typing import TYPE_CHECKING, Any, TypeVar

from c360_platform.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)
PREFIX = "c360"
ALGORITHM = "Ed25519"
"""The `alg` of a token signed with the deployment's key (HMAC tokens have none)."""
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
PUBLIC_KEY_ENV = "C360_AUTH_PUBLIC_KEY"
SECRET_ENV = "C360_AUTH_SECRET"  # noqa: S105 (the variable's name)
MOVE_ON = (
    "C360_AUTH_SECRET is set: tokens signed with it (HMAC) are accepted, and whoever reads this"
    " process's environment can sign an operator's token. Move to the key pair: give every"
    " service C360_AUTH_PUBLIC_KEY and a C360_TOKEN of its own, issue new tokens with the"
    " signing key, then remove C360_AUTH_SECRET (deploy/README.md, 'Moving to signed tokens')"
)


def _claims(subject: str, role: Role, valid_for: float | None, alg: str | None) -> str:
    """The payload of a new token (base64url JSON)."""
    if not SUBJECT.fullmatch(subject):
        raise ValueError(f"not a holder's id (such as app:erp-bridge): {subject!r}")
    claims: dict[str, Any] = {"sub": subject, "role": str(role), "iat": int(time.time())}
    if valid_for is not None:
        claims["exp"] = int(time.time() + valid_for)
    if alg is not None:
        claims["alg"] = alg
    return _b64(json.dumps(claims, separators=(",", ":")).encode())


def _hmac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def _check_secret(secret: str) -> str:
    if len(secret) < 32:
        raise ValueError("C360_AUTH_SECRET must be at least 32 characters")
    return secret


class SigningKey:
    """The deployment's Ed25519 private key: issues tokens. Held by whoever issues them (the
    operator, `c360 up`), never by a service."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key is not an Ed25519 private key")
        return cls(key)

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key (PEM) that services check this key's tokens with."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(self, subject: str, role: Role, *, valid_for: float | None = None) -> str:
        """A token for `subject` (an id, never a person's name), expiring after `valid_for`
        seconds if given."""
        payload = _claims(subject, role, valid_for, ALGORITHM)
        return f"{PREFIX}.{payload}.{_b64(self._key.sign(payload.encode()))}"


def issue_with_secret(
    secret: str, subject: str, role: Role, *, valid_for: float | None = None
) -> str:
    """A token signed with the old shared secret (HMAC): only for deployments that have not
    moved to the key pair yet (a process that still holds C360_AUTH_SECRET)."""
    payload = _claims(subject, role, valid_for, None)
    return f"{PREFIX}.{payload}.{_hmac(_check_secret(secret), payload)}"


PUBLIC_KEY_BLOCK = re.compile(
    r"-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----"
)


def load_public_keys(value: str) -> list[Ed25519PublicKey]:
    """The public keys of C360_AUTH_PUBLIC_KEY: PEM text, or the path of a file holding it;
    one or more PEM blocks (more than one while the key pair itself is rotated). ValueError
    for anything else, and for a private key (a service must not hold one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise ValueError(f"{PUBLIC_KEY_ENV}: not PEM text, nor a file to read: {exc}") from None
    if "PRIVATE KEY" in text:
        raise ValueError(
            f"{PUBLIC_KEY_ENV} holds a private key: give services the public key only"
            " (a service that holds the signing key can issue any token)"
        )
    blocks = PUBLIC_KEY_BLOCK.findall(text)
    if not blocks:
        raise ValueError(f"{PUBLIC_KEY_ENV}: no PEM public key (-----BEGIN PUBLIC KEY-----)")
    keys = []
    for block in blocks:
        key = serialization.load_pem_public_key(block.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{PUBLIC_KEY_ENV}: not an Ed25519 public key")
        keys.append(key)
    return keys


class Authority:
    """Checks the tokens of one deployment: with its public key(s), and, while a deployment
    moves to the key pair, with its old secret. It cannot issue a token (that takes the
    SigningKey, which services never hold)."""

    def __init__(
        self,
        public_keys: Iterable[Ed25519PublicKey] = (),
        *,
        secret: str = "",
        revocations: Path | None = None,
    ) -> None:
        self._public = list(public_keys)
        self._secret = _check_secret(secret) if secret else ""
        if not self._public and not self._secret:
            raise ValueError("an Authority needs a public key (or the old secret)")
        self._verified: dict[str, tuple[Principal, int | None, int]] = {}
        """Tokens whose signature and claims were checked: the same few callers send the same
        token on every call, so a call costs a look-up, not a signature check and a JSON parse.
        The expiry and the revocations are checked on every call all the same."""
        self._revocations = Revocations(revocations) if revocations is not None else None

    @classmethod
    def of(cls, public_key: str, secret: str = "", **kw: Any) -> Authority | None:
        """The authority of C360_AUTH_PUBLIC_KEY's and C360_AUTH_SECRET's values; None when
        both are empty."""
        if not public_key and not secret:
            return None
        keys = load_public_keys(public_key) if public_key else []
        return cls(keys, secret=secret, **kw)

    @classmethod
    def from_env(cls) -> Authority | None:
        return cls.of(
            os.environ.get(PUBLIC_KEY_ENV, ""),
            os.environ.get(SECRET_ENV, ""),
            revocations=revocations_path(),
        )

    @property
    def accepts_secret(self) -> bool:
        """Whether tokens signed with the old shared secret are accepted (the transition)."""
        return bool(self._secret)

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

    def _signed(self, payload: str, signature: str) -> str | None:
        """The algorithm whose signature `signature` is over `payload`, if any."""
        from cryptography.exceptions import InvalidSignature

        try:
            raw = _unb64(signature)
        except ValueError:
            return None
        for key in self._public:
            try:
                key.verify(raw, payload.encode())
            except InvalidSignature:
                continue
            return ALGORITHM
        if self._secret and hmac.compare_digest(_hmac(self._secret, payload), signature):
            return "HMAC"
        return None

    def _check(self, token: str) -> tuple[Principal, int | None, int]:
        prefix, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if prefix != PREFIX or not payload or not signature:
            raise Unauthenticated("not a c360 bearer token")
        algorithm = self._signed(payload, signature)
        if algorithm is None:
            raise Unauthenticated("the token's signature does not match this deployment")
        try:
            claims = json.loads(_unb64(payload))
            role = Role(claims["role"])
            subject = claims["sub"]
            expires = claims.get("exp")
            issued = claims.get("iat", 0)
            stated = claims.get("alg", "HMAC")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unauthenticated("the token's claims are not readable") from None
        # Checked, not assumed: a subject that could forge audit lines, an expiry that is
        # no whole number (which would otherwise never expire), or an algorithm other than
        # the one that signed it, is no token of ours.
        if not isinstance(subject, str) or not SUBJECT.fullmatch(subject):
            raise Unauthenticated("the token's claims are not readable")
        if expires is not None and (type(expires) is not int):
            raise Unauthenticated("the token's claims are not readable")
        if type(issued) is not int or stated != algorithm:
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


SIGNING_KEY_FILE = "signing.pem"
PUBLIC_KEY_FILE = "public.pem"


def home_signing_key(home: Path) -> SigningKey:
    """HOME/auth/signing.pem (0600), created on first use (with HOME/auth/public.pem beside
    it): tokens issued stay valid across runs."""
    path = home / "auth" / SIGNING_KEY_FILE
    try:
        key = SigningKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        key = SigningKey.generate()
        _private_write(path, key.pem().decode())
    public = home / "auth" / PUBLIC_KEY_FILE
    public.write_bytes(key.public_pem())
    return key


def write_role_tokens(home: Path, key: SigningKey) -> None:
    """HOME/auth/<role>.token (0600) for the people at this machine: the CLI uses the
    operator's; agent and integration ones are there to hand to applications."""
    for role in (Role.OPERATOR, Role.AGENT, Role.INTEGRATION):
        _private_write(home / "auth" / f"{role}.token", key.issue(f"local:{role}", role) + "\n")


def home_token(home: Path, role: Role = Role.OPERATOR) -> str:
    try:
        return (home / "auth" / f"{role}.token").read_text().strip()
    except OSError:
        return ""


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((METADATA_KEY, f"Bearer {token}"),) if token else ()
