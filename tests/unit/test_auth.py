"""Tokens: signed per deployment, with a role, optionally expiring; checked per RPC."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from c360_platform import auth
from c360_platform.auth import ANY_ROLE, DEFAULT_ROLES, Authority, Role, requires, roles_of
from c360_platform.errors import PermissionDenied, Unauthenticated

SECRET = "s" * 40


def _metadata(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_a_token_names_its_holder_and_role_and_only_its_deployment_accepts_it() -> None:
    authority = Authority(SECRET)
    token = authority.issue("app:erp-bridge", Role.INTEGRATION)
    assert authority.verify(token).subject == "app:erp-bridge"
    assert authority.verify(token).role == Role.INTEGRATION
    with pytest.raises(Unauthenticated, match="signature"):
        Authority("t" * 40).verify(token)
    prefix, _payload, signature = token.split(".")
    forged = Authority(SECRET).issue("app:erp-bridge", Role.OPERATOR).split(".")[1]
    with pytest.raises(Unauthenticated):
        authority.verify(f"{prefix}.{forged}.{signature}")  # a role swapped in
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(authority.issue("app:x", Role.AGENT, valid_for=-1))


def test_a_token_verified_once_still_expires_and_a_bad_one_is_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority = Authority(SECRET)
    now = 1_900_000_000.0
    monkeypatch.setattr("c360_platform.auth.time.time", lambda: now)
    token = authority.issue("app:x", Role.AGENT, valid_for=60)
    assert authority.verify(token).subject == "app:x"  # remembered from here on
    now += 61
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(token)
    prefix, payload, _ = token.split(".")
    for _ in range(2):  # refused the second time too
        with pytest.raises(Unauthenticated, match="signature"):
            authority.verify(f"{prefix}.{payload}.{'A' * 43}")
    many = [authority.issue(f"app:{i}", Role.AGENT) for i in range(auth.VERIFIED_TOKENS + 5)]
    assert [authority.verify(t).subject for t in many] == [f"app:{i}" for i in range(len(many))]
    assert len(authority._verified) <= auth.VERIFIED_TOKENS


def test_calls_without_a_token_or_with_a_role_the_rpc_does_not_admit_are_refused() -> None:
    authority = Authority(SECRET)
    with pytest.raises(Unauthenticated, match="bearer token"):
        authority.authorize([], DEFAULT_ROLES)
    integration = authority.issue("app:erp", Role.INTEGRATION)
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
    authority = Authority(SECRET)
    for bad in ("app:x\n2026-12-07 INFO c360.audit: forged", "Ada Lovelace", "ada@example.com", ""):
        with pytest.raises(ValueError, match="id"):
            authority.issue(bad, Role.AGENT)
    # Signed with the secret all the same (by a tool of its own): refused, not logged.
    payload = auth._b64(b'{"sub":"app:x\\nforged line","role":"agent"}')
    with pytest.raises(Unauthenticated, match="not readable"):
        authority.verify(f"c360.{payload}.{authority._sign(payload)}")


def test_an_expiry_that_is_no_whole_number_is_refused_not_taken_as_never() -> None:
    authority = Authority(SECRET)
    for exp in ("1", 1.5, True, [1]):
        claims = json.dumps({"sub": "app:x", "role": "operator", "exp": exp}).encode()
        payload = auth._b64(claims)
        with pytest.raises(Unauthenticated, match="not readable"):
            authority.verify(f"c360.{payload}.{authority._sign(payload)}")


def test_token_create_refuses_a_name_that_is_no_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_cli.main import main

    auth.home_secret(tmp_path)
    for name in ("app:x\nforged line", "Ada Lovelace", "ada@example.com"):
        code = main(["--home", str(tmp_path), "token", "create", "--role", "agent", "--name", name])
        assert code == 2
        assert "--name" in capsys.readouterr().err
    assert (
        main(["--home", str(tmp_path), "token", "create", "--role", "agent", "--name", "app:crm"])
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert Authority(auth.home_secret(tmp_path)).verify(token).subject == "app:crm"


def test_a_created_token_expires_in_90_days_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_cli.main import main

    auth.home_secret(tmp_path)
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

    secret = auth.home_secret(tmp_path)
    revoked = tmp_path / "auth" / "revoked.json"
    authority = Authority(secret, revocations=revoked)
    leaked = authority.issue("app:erp", Role.INTEGRATION)
    other = authority.issue("app:crm", Role.AGENT)
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
