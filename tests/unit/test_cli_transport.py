"""The CLI never sends a bearer token in clear to another machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from c360_cli.client import on_this_machine
from c360_cli.main import main
from c360_platform import tls


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/tmp/c360.sock", True),
        ("10.1.2.3:50051", False),
        ("customer.c360.svc:50051", False),
        ("[2001:db8::1]:50051", False),
    ],
)
def test_what_counts_as_this_machine(address: str, local: bool) -> None:
    assert on_this_machine(address) is local


def test_a_token_is_not_sent_in_clear_to_another_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls.use(None)  # no certificate: endpoints.json has none, nor the environment
    try:
        started = time.monotonic()
        code = main(
            ["--json", "--home", str(tmp_path), "--addr", "customer=10.255.255.1:50051",
             "--token", "c360.x.y", "--timeout", "2", "customer", "get",
             "00000000-0000-4000-8000-000000000001"]
        )  # fmt: skip
    finally:
        tls.forget_choice()
    assert code == 1
    error = json.loads(capsys.readouterr().err or "{}").get("error", {})
    assert "in clear" in error.get("message", "")
    assert time.monotonic() - started < 1.5  # refused before any connection is tried
