"""`c360 call`: every registered service's methods, reached without CLI code of their own."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from c360_cli.main import main
from c360_platform import auth

from .conftest import Stack

pytestmark = pytest.mark.integration


class Cli:
    """The CLI in this process (on a thread: the services answer on this event loop), with
    the stack's addresses and its output captured."""

    def __init__(self, stack: Stack, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.options = ["--home", str(home), "--token", stack.token(auth.Role.OPERATOR)]
        for name, host in stack.hosts.items():
            self.options += ["--addr", f"{name}=127.0.0.1:{host.bound_port}"]
        self.capsys = capsys

    async def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, [*self.options, "call", *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, *args: str) -> Any:
        code, out, err = await self.run(*args)
        assert code == 0, f"c360 call {' '.join(args)}: {err}"
        return json.loads(out)


async def test_call_reaches_each_service_by_its_registry_name(
    stack: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = Cli(stack, tmp_path, capsys)
    ada = {"display_name": "Ada Lovelace", "kind": "CUSTOMER_KIND_PERSON", "emails": ["a@x.org"]}
    registered = await cli.json("customer", "RegisterCustomer", json.dumps(ada))
    customer_id = registered["result"]["aggregate_id"]
    token = registered["result"]["consistency_token"]

    got = await cli.json("customer", "GetCustomer", json.dumps({"customer_id": customer_id}))
    assert got["customer"]["customer_id"] == customer_id
    assert got["customer"]["display_name"] == "Ada Lovelace"
    assert got["customer"]["kind"] == "CUSTOMER_KIND_PERSON"

    # the request from stdin, to another service
    request = {"customer_id": customer_id, "wait_for": token}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(request)))
    timeline = await cli.json("timeline", "GetTimeline", "-")
    assert [e["type"] for e in timeline["entries"]] == ["customer.registered"]

    # a stream of replies: one JSON document a line
    twin = {**ada, "display_name": "Ada King"}
    await cli.json("customer", "RegisterCustomer", json.dumps(twin))
    code, out, err = await cli.run("customer", "DuplicateReport")
    assert code == 0, err
    pairs = [p for line in out.splitlines() for p in json.loads(line).get("pairs", [])]
    assert len(pairs) == 1
    assert customer_id in (pairs[0]["customer_id"], pairs[0]["duplicate_id"])

    # failures as every command reports them: the service's word, the CLI's exit status
    unknown = json.dumps({"customer_id": str(uuid.uuid4())})
    code, _, err = await cli.run("customer", "GetCustomer", unknown)
    assert (code, err.split(":")[0]) == (1, "not found")
    bad = json.dumps({**ada, "emails": ["not-mail"]})
    code, _, err = await cli.run("customer", "RegisterCustomer", bad)
    assert code == 2
    assert "email: not a valid address" in err
    code, _, err = await cli.run("customer", "GetCustomer", '{"customer": 1}')
    assert code == 2
    assert "GetCustomerRequest" in err
    code, _, err = await cli.run("customer", "NoSuchMethod")
    assert code == 2
    assert "has no method 'NoSuchMethod'" in err
    code, _, err = await cli.run("no-such-service", "GetCustomer")
    assert code == 2
    assert "no service 'no-such-service'" in err
