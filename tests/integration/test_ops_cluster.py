"""`c360 ops` against a real Kubernetes cluster where c360 is deployed: opt-in, run only when
C360_KUBECONFIG names a kubeconfig (and C360_NAMESPACE the namespace, default c360). No cluster
can run on the machines this project is built on, so these are skipped there."""

from __future__ import annotations

import json
import os

import pytest

from c360_cli.main import main
from c360_platform import registry

KUBECONFIG = os.environ.get("C360_KUBECONFIG", "")
NAMESPACE = os.environ.get("C360_NAMESPACE", "c360")

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason="C360_KUBECONFIG is not set")


def test_status_lists_every_registered_service_with_one_relay_holder_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["ops", "status", "--kubeconfig", KUBECONFIG, "-n", NAMESPACE, "--json"])
    report = json.loads(capsys.readouterr().out)
    rows = {d["name"]: d for d in report["deployments"]}
    assert set(registry.services()) <= set(rows)
    for spec in registry.event_sources():
        # The relay runs in its own Deployment (NAME-relay) since C360_RELAY=process.
        runners = (rows.get(f"{spec.name}-relay", {}), rows[spec.name])
        holders = [h for row in runners for h in row.get("leaders", []) if h.startswith("relay ")]
        assert len(holders) == 1, f"{spec.name}: relay lock holders {holders}"
    assert code in (0, 1)


def test_logs_of_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ops", "logs", registry.TIMELINE, "--tail", "5"]
    code = main([*args, "--kubeconfig", KUBECONFIG, "-n", NAMESPACE, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["pods"]
