"""Tokens: signed with the deployment's Ed25519 key, checked with its public key alone, with a
role, optionally expiring, revocable; checked per RPC. The old shared secret (HMAC) only while
a deployment moves to the key pair."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from c360_platform import auth
from c360_platform.auth import (
    ANY_ROLE,
    DEFAULT_ROLES,
    Authority,
    Role,
    SigningKey,
    requires,
    roles_of,
)
from c360_platform.errors import PermissionDenied, Unauthenticated

SECRET = "s" * 40
KEY = SigningKey.generate()


def _checker(key: SigningKey = KEY, **kw: object) -> Authority:
    """What a service holds: the public key, nothing that signs."""
    made = Authority.of(key.public_pem().decode(), **kw)  # type: ignore[arg-type]
    assert made is not None
    return made


def _metadata(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _signed(claims: Mapping[str, object], key: SigningKey = KEY) -> str:
    """A token of arbitrary claims, signed with `key` (as a tool of its own would)."""
    payload = auth._b64(json.dumps(claims).encode())
    return f"c360.{payload}.{auth._b64(key._key.sign(payload.encode()))}"


def test_a_token_names_its_holder_and_role_and_only_its_deployment_accepts_it() -> None:
    authority = _checker()
    token = KEY.issue("app:erp-bridge", Role.INTEGRATION)
    assert token.startswith("c360.")
    assert json.loads(auth._unb64(token.split(".")[1]))["alg"] == "Ed25519"
    assert authority.verify(token).subject == "app:erp-bridge"
    assert authority.verify(token).role == Role.INTEGRATION
    with pytest.raises(Unauthenticated, match="signature"):
        _checker(SigningKey.generate()).verify(token)  # another deployment's key
    prefix, _payload, signature = token.split(".")
    forged = KEY.issue("app:erp-bridge", Role.OPERATOR).split(".")[1]
    with pytest.raises(Unauthenticated, match="signature"):
        authority.verify(f"{prefix}.{forged}.{signature}")  # a role swapped in
    tampered = auth._b64(auth._unb64(_payload).replace(b"integration", b"operator"))
    with pytest.raises(Unauthenticated, match="signature"):
        authority.verify(f"{prefix}.{tampered}.{signature}")  # the payload edited
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(KEY.issue("app:x", Role.AGENT, valid_for=-1))


def test_a_service_with_the_public_key_alone_cannot_issue_any_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from c360_platform.config import Settings

    monkeypatch.setenv(auth.PUBLIC_KEY_ENV, KEY.public_pem().decode())
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    monkeypatch.delenv("C360_TOKEN", raising=False)
    # Without a token of its own it signs none (it had signed its own with the secret).
    assert Settings.from_env("timeline", 50052).token == ""
    authority = Authority.from_env()
    assert authority is not None
    assert not hasattr(authority, "issue")
    assert not authority.accepts_secret
    # What it holds signs nothing that it accepts: not an HMAC under the public key's text,
    # not an Ed25519 token of a key of its own.
    public = KEY.public_pem().decode()
    for made in (
        auth._claims("app:x", Role.OPERATOR, None, None),
        auth._claims("app:x", Role.OPERATOR, None, "Ed25519"),
    ):
        with pytest.raises(Unauthenticated, match="signature"):
            authority.verify(f"c360.{made}.{auth._hmac(public, made)}")
    with pytest.raises(Unauthenticated, match="signature"):
        authority.verify(SigningKey.generate().issue("app:x", Role.OPERATOR))
    # And a private key is never taken for the public one.
    with pytest.raises(ValueError, match="private key"):
        Authority.of(KEY.pem().decode())


def test_an_hmac_token_is_refused_where_only_the_public_key_is_set() -> None:
    old = auth.issue_with_secret(SECRET, "service:timeline", Role.SERVICE)
    with pytest.raises(Unauthenticated, match="signature"):
        _checker().verify(old)
    # While a deployment moves to the key pair, a process that still has the secret takes
    # both; and an Ed25519 token is never checked as an HMAC one (nor the other way round).
    moving = _checker(secret=SECRET)
    assert moving.accepts_secret
    assert moving.verify(old).subject == "service:timeline"
    assert moving.verify(KEY.issue("app:x", Role.AGENT)).subject == "app:x"
    claims = auth._claims("app:x", Role.OPERATOR, None, "Ed25519")
    with pytest.raises(Unauthenticated, match="not readable"):
        moving.verify(f"c360.{claims}.{auth._hmac(SECRET, claims)}")
    with pytest.raises(Unauthenticated, match="not readable"):
        moving.verify(_signed({"sub": "app:x", "role": "operator"}))  # no alg: an HMAC's


async def test_a_service_that_still_has_the_secret_warns_how_to_move_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (On the event loop: a host makes its gRPC server, which needs one; a test before it in
    # the same process may have left none for a synchronous test.)
    from c360_platform.config import Settings
    from c360_platform.rpc import ServiceHost

    caplog.set_level(logging.WARNING)
    public = KEY.public_pem().decode()
    base = Settings("customer", "", "", "127.0.0.1", 0, "", auth_public_key=public, token="t")
    ServiceHost.for_settings(base)
    assert "C360_AUTH_SECRET" not in caplog.text
    assert "C360_TOKEN" not in caplog.text
    ServiceHost.for_settings(dataclasses.replace(base, token=""))
    assert "no C360_TOKEN" in caplog.text  # it could not call the others: said at start
    moving = Settings("customer", "", "", "127.0.0.1", 0, "", auth_public_key=public,
                      auth_secret=SECRET)  # fmt: skip
    host = ServiceHost.for_settings(moving)
    assert host.authority is not None
    assert host.authority.accepts_secret
    assert "C360_AUTH_SECRET is set" in caplog.text
    assert "Moving to signed tokens" in caplog.text


def test_the_public_key_is_pem_text_or_a_file_and_may_name_the_next_key(tmp_path: Path) -> None:
    nxt = SigningKey.generate()
    both = tmp_path / "public.pem"
    both.write_bytes(KEY.public_pem() + nxt.public_pem())
    authority = Authority.of(str(both))
    assert authority is not None
    assert authority.verify(KEY.issue("app:x", Role.AGENT)).subject == "app:x"
    assert authority.verify(nxt.issue("app:y", Role.AGENT)).subject == "app:y"
    for bad in (str(tmp_path / "missing.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n"):
        with pytest.raises(ValueError, match="C360_AUTH_PUBLIC_KEY"):
            Authority.of(bad)


def test_a_token_verified_once_still_expires_and_a_bad_one_is_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority = _checker()
    now = 1_900_000_000.0
    monkeypatch.setattr("c360_platform.auth.time.time", lambda: now)
    token = KEY.issue("app:x", Role.AGENT, valid_for=60)
    assert authority.verify(token).subject == "app:x"  # remembered from here on
    now += 61
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(token)
    prefix, payload, _ = token.split(".")
    for _ in range(2):  # refused the second time too
        with pytest.raises(Unauthenticated, match="signature"):
            authority.verify(f"{prefix}.{payload}.{'A' * 86}")
    many = [KEY.issue(f"app:{i}", Role.AGENT) for i in range(auth.VERIFIED_TOKENS + 5)]
    assert [authority.verify(t).subject for t in many] == [f"app:{i}" for i in range(len(many))]
    assert len(authority._verified) <= auth.VERIFIED_TOKENS


def test_calls_without_a_token_or_with_a_role_the_rpc_does_not_admit_are_refused() -> None:
    authority = _checker()
    with pytest.raises(Unauthenticated, match="bearer token"):
        authority.authorize([], DEFAULT_ROLES)
    integration = KEY.issue("app:erp", Role.INTEGRATION)
    with pytest.raises(PermissionDenied, match="role integration"):
        authority.authorize(_metadata(integration), DEFAULT_ROLES)
    assert authority.authorize(_metadata(integration), ANY_ROLE).role == Role.INTEGRATION


def test_servicer_methods_declare_their_roles() -> None:
    class Servicer:
        @requires(Role.OPERATOR)
        async def Rebuild(self) -> None: ...

        async def Read(self) -> None: ...

    assert roles_of(Servicer(), "Rebuild") == {Role.OPERATOR}
    assert roles_of(Servicer(), "Read") == DEFAULT_ROLES


def test_a_holder_is_an_id_that_cannot_break_the_audit_line_it_is_written_into() -> None:
    authority = _checker()
    for bad in ("app:x\n2026-12-07 INFO c360.audit: forged", "Ada Lovelace", "ada@example.com", ""):
        with pytest.raises(ValueError, match="id"):
            KEY.issue(bad, Role.AGENT)
    # Signed with the key all the same (by a tool of its own): refused, not logged.
    forged = _signed({"sub": "app:x\nforged line", "role": "agent", "alg": "Ed25519"})
    with pytest.raises(Unauthenticated, match="not readable"):
        authority.verify(forged)


def test_an_expiry_that_is_no_whole_number_is_refused_not_taken_as_never() -> None:
    authority = _checker()
    for exp in ("1", 1.5, True, [1]):
        claims = {"sub": "app:x", "role": "operator", "exp": exp, "alg": "Ed25519"}
        with pytest.raises(Unauthenticated, match="not readable"):
            authority.verify(_signed(claims))


def test_token_create_refuses_a_name_that_is_no_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_cli.main import main

    auth.home_signing_key(tmp_path)
    for name in ("app:x\nforged line", "Ada Lovelace", "ada@example.com"):
        code = main(["--home", str(tmp_path), "token", "create", "--role", "agent", "--name", name])
        assert code == 2
        assert "--name" in capsys.readouterr().err
    assert (
        main(["--home", str(tmp_path), "token", "create", "--role", "agent", "--name", "app:crm"])
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert _checker(auth.home_signing_key(tmp_path)).verify(token).subject == "app:crm"
    signing = tmp_path / "auth" / "signing.pem"
    assert oct(signing.stat().st_mode & 0o777) == "0o600"
    # The operator's key elsewhere (on Kubernetes, from the Secret c360-auth-signing).
    elsewhere = tmp_path / "operator.pem"
    elsewhere.write_bytes(KEY.pem())
    other_home = ["--home", str(tmp_path / "none"), "token", "create", "--role", "agent"]
    assert main([*other_home, "--name", "app:crm", "--signing-key", str(elsewhere)]) == 0
    assert _checker().verify(capsys.readouterr().out.strip()).subject == "app:crm"
    assert main([*other_home, "--name", "app:crm"]) == 1
    assert "no signing key" in capsys.readouterr().err


def test_a_created_token_expires_in_90_days_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_cli.main import main

    auth.home_signing_key(tmp_path)
    base = ["--home", str(tmp_path), "--json", "token", "create", "--role", "integration"]
    assert main([*base, "--name", "app:erp"]) == 0
    made = json.loads(capsys.readouterr().out)
    expires = auth.expiry_of(made["token"])
    assert expires is not None
    assert abs(expires - (time.time() + 90 * 86400)) < 60
    assert made["expires_at"].endswith("Z")
    assert main([*base, "--name", "app:erp", "--days", "7"]) == 0
    week = auth.expiry_of(json.loads(capsys.readouterr().out)["token"])
    assert week is not None
    assert abs(week - (time.time() + 7 * 86400)) < 60


def test_a_revoked_holders_tokens_are_refused_within_seconds_and_new_ones_are_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_cli.main import main

    key = auth.home_signing_key(tmp_path)
    revoked = tmp_path / "auth" / "revoked.json"
    authority = _checker(key, revocations=revoked)
    leaked = key.issue("app:erp", Role.INTEGRATION)
    other = key.issue("app:crm", Role.AGENT)
    clock = [1000.0]
    monkeypatch.setattr("c360_platform.auth.time.monotonic", lambda: clock[0])
    assert authority.verify(leaked).subject == "app:erp"  # remembered from here on

    assert main(["--home", str(tmp_path), "token", "revoke", "--name", "app:erp"]) == 0
    assert "app:erp" in capsys.readouterr().out
    assert oct(revoked.stat().st_mode & 0o777) == "0o600"
    clock[0] += auth.REVOCATIONS_CHECK_SECONDS
    with pytest.raises(Unauthenticated, match="revoked"):
        authority.verify(leaked)
    assert authority.verify(other).subject == "app:crm"  # only that holder's
    # A new token for the holder, made after the revocation, is good.
    assert main(["--home", str(tmp_path), "token", "create", "--role", "integration",
                 "--name", "app:erp"]) == 0  # fmt: skip
    fresh = capsys.readouterr().out.strip()
    assert authority.verify(fresh).subject == "app:erp"
    # A broken file, or one that cannot be looked at, keeps what was read before (no call
    # fails for it).
    revoked.write_text("{not json")
    clock[0] += auth.REVOCATIONS_CHECK_SECONDS
    with pytest.raises(Unauthenticated, match="revoked"):
        authority.verify(leaked)
    monkeypatch.setattr(Path, "stat", lambda *_a, **_k: (_ for _ in ()).throw(PermissionError()))
    clock[0] += auth.REVOCATIONS_CHECK_SECONDS
    with pytest.raises(Unauthenticated, match="revoked"):
        authority.verify(leaked)


def test_the_services_of_a_deployment_are_told_where_the_revocations_are(tmp_path: Path) -> None:
    from c360_platform.deployment import Deployment

    planned = Deployment.plan("postgresql://x", "nats://x", revocations=tmp_path / "r.json")
    env = planned.environment(next(iter(planned.ports)))
    assert env[auth.REVOCATIONS_ENV] == str(tmp_path / "r.json")


def test_the_services_of_a_deployment_hold_no_signing_material() -> None:
    """What `c360 up` gives each service's processes: the public key and a token of its own;
    neither the signing key nor the old secret."""
    from c360_platform.deployment import Deployment

    planned = Deployment.plan("postgresql://x", "nats://x")
    for name in planned.ports:
        env = planned.environment(name)
        assert "C360_AUTH_SECRET" not in env
        assert not any("PRIVATE KEY" in value for value in env.values())
        authority = Authority.of(env["C360_AUTH_PUBLIC_KEY"])
        assert authority is not None
        assert authority.verify(env["C360_TOKEN"]).subject == f"service:{name}"
