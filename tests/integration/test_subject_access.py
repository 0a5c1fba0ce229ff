"""A data protection officer's CLI: `c360 customer export` (everything c360 holds about a
customer, in one document) and an objection to marketing on every channel at once."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import auth

from .conftest import Stack
from .helpers import register

pytestmark = pytest.mark.integration


def _export(stack: Stack, home: Path, *args: str) -> Any:
    return _customer(stack, home, "export", *args)


def _customer(stack: Stack, home: Path, *args: str) -> Any:
    """`c360 customer ARGS` against the stack; its stdout as JSON, and its stderr."""
    addresses = [
        f"{service}=127.0.0.1:{stack.hosts[service].bound_port}"
        for service in ("customer", "timeline")
    ]
    command = [sys.executable, "-m", "c360_cli.main", "--home", str(home)]
    for address in addresses:
        command += ["--addr", address]
    done = subprocess.run(
        [*command, "--token", stack.token(auth.Role.AGENT), "customer", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


async def test_an_export_holds_the_record_its_duplicates_consent_and_every_service(
    stack: Stack, tmp_path: Path
) -> None:
    ada = await register(stack.customer, "Ada Exportova", "ada.exportova@example.org")
    cid = ada.result.aggregate_id
    twin = await register(stack.customer, "Ada Exportová", "ada.e@example.org")
    twin_id = twin.result.aggregate_id
    await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=twin_id,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web-form",
        )
    )
    await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(survivor_id=cid, duplicate_id=twin_id, reason="same person")
    )
    ticket = await stack.service_desk.OpenTicket(
        dapi.OpenTicketRequest(
            customer_id=cid,
            channel=tev.TICKET_CHANNEL_EMAIL,
            subject="Parcel for Ada Exportova",
            allow_unknown_customer=True,
        )
    )
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, wait_for=ticket.result.consistency_token),
        timeout=10,
    )

    # Asked by the duplicate's id: the survivor, which holds both, is exported.
    # (In a thread: the stack serves on this test's event loop.)
    document, note = await asyncio.to_thread(_export, stack, tmp_path, twin_id)
    assert f"merged into {cid}" in " ".join(note.split())
    assert document["export"]["customer_id"] == cid
    assert document["customer"]["emails"] == ["ada.exportova@example.org", "ada.e@example.org"]
    [consent] = document["customer"]["consents"]
    assert (consent["source"], consent["recorded_by"]) == ("web-form", "test:operator")
    assert [d["customer_id"] for d in document["merged_duplicates"]] == [twin_id]
    assert document["merged_duplicates"][0]["display_name"] == "Ada Exportová"
    assert document["profile"]["display_name"] == "Ada Exportova"
    summaries = [e["summary"] for e in document["timeline"]]
    assert summaries[0] == "Registered person “Ada Exportova” via web"  # oldest first
    assert any("Parcel for Ada Exportova" in s for s in summaries)
    assert {"customer", "service-desk"} <= set(document["export"]["sources"])

    # To a file only its owner may read; the summary on stdout.
    target = tmp_path / "ada.json"
    summary, _ = await asyncio.to_thread(
        _export, stack, tmp_path, cid, "--output", str(target), "--json"
    )
    assert summary["timeline_entries"] == len(document["timeline"])
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert json.loads(target.read_text())["customer"]["customer_id"] == cid
    # Over a file that is there, readable by everyone: the export is still its owner's alone.
    # And a link planted at the path (in a shared /tmp, by another user) is replaced, not
    # followed to the file it points at.
    target.chmod(0o644)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    planted = tmp_path / "planted.json"
    planted.symlink_to(victim)
    for path in (target, planted):
        await asyncio.to_thread(_export, stack, tmp_path, cid, "--output", str(path), "--json")
        assert not path.is_symlink()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert json.loads(path.read_text())["customer"]["customer_id"] == cid
    assert victim.read_text() == "keep\n"


async def test_an_objection_revokes_marketing_on_every_channel_at_once(
    stack: Stack, tmp_path: Path
) -> None:
    ada = await register(stack.customer, "Ada Objecta", "ada.objecta@example.org")
    cid = ada.result.aggregate_id
    args = ("consent", "revoke", cid, "--channel", "all", "--purpose", "marketing")
    objection = (*args, "--source", "objection", "--request-id", "obj-1", "--json")
    done, _ = await asyncio.to_thread(_customer, stack, tmp_path, *objection)
    assert [r["channel"] for r in done["results"]] == ["email", "sms", "phone", "post"]
    customer = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))).customer
    assert sorted((c.channel, c.granted, c.source) for c in customer.consents) == [
        (channel, False, "objection")
        for channel in (
            ev.CONSENT_CHANNEL_EMAIL,
            ev.CONSENT_CHANNEL_SMS,
            ev.CONSENT_CHANNEL_PHONE,
            ev.CONSENT_CHANNEL_POST,
        )
    ]
    # A retry with the same request id records nothing again.
    again, _ = await asyncio.to_thread(_customer, stack, tmp_path, *objection)
    assert [r["replayed"] for r in again["results"]] == [True] * 4
    assert (
        customer.version
        == (
            await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))
        ).customer.version
    )
