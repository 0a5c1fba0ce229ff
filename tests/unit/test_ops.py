"""`c360 ops` against a fake Kubernetes API server the test starts (tests/unit/fake_kubernetes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from c360_cli.main import main
from c360_platform import registry
from tests.unit.fake_kubernetes import State, serve

NAMESPACE = "c360-test"
IMAGE = "registry.example.com/c360:0.2.0"


def _metrics(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[State, Path]]:
    """The Deployments the manifests make: a service's API pods and, for one that publishes
    events, its relay's (NAME-relay), whose pod holds the relay's lock."""
    state = State()
    customer = state.deployment("customer", replicas=2, ready=2, image=IMAGE)
    state.pod(
        "customer-7d9f-a",
        customer,
        metrics=_metrics('c360_relay_active{source="customer"} 0.0'),
        log="one\ntwo\nthree",
    )
    state.pod(
        "customer-7d9f-b",
        customer,
        metrics=_metrics('c360_relay_active{source="customer"} 0.0'),
        log="four",
    )
    relay = state.deployment("customer-relay", replicas=1, ready=1, image=IMAGE)
    state.pod(
        "customer-relay-8c1e-a",
        relay,
        metrics=_metrics(
            'c360_relay_active{source="customer"} 1.0',
            'c360_relay_lag_events{source="customer"} 3.0',
        ),
        log="published 3",
    )
    timeline = state.deployment("timeline", replicas=2, ready=1, image=IMAGE)
    state.pod(
        "timeline-5c4b-a",
        timeline,
        metrics=_metrics(
            'c360_projector_active{consumer="timeline"} 1.0',
            'c360_projector_lag_messages{consumer="timeline"} 1500.0',
            "c360_dead_letters 2.0",
        ),
    )
    state.pod("timeline-5c4b-b", timeline, phase="Pending")
    desk = state.deployment("service-desk", replicas=1, ready=1, image=IMAGE)
    state.pod("service-desk-6f7a-a", desk, metrics=None)
    kubeconfig = tmp_path / "kubeconfig"
    with serve(state, kubeconfig, NAMESPACE):
        yield state, kubeconfig


def test_status_shows_replicas_lock_holders_lags_and_dead_letters(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    code = main(["ops", "status", "--kubeconfig", str(kubeconfig), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["namespace"] == NAMESPACE
    rows = {d["name"]: d for d in report["deployments"] if not d["missing"]}
    assert set(rows) == {"customer", "customer-relay", "timeline", "service-desk"}
    customer, relay = rows["customer"], rows["customer-relay"]
    timeline, desk = rows["timeline"], rows["service-desk"]
    assert (customer["ready"], customer["desired"]) == (2, 2)
    assert customer["leaders"] == []
    assert customer["healthy"] is True  # its relay's pod holds the lock
    assert relay["leaders"] == ["relay customer: customer-relay-8c1e-a"]
    assert relay["relay_lag"] == 3
    assert relay["healthy"] is True
    assert timeline["leaders"] == ["projector timeline: timeline-5c4b-a"]
    assert timeline["pods"] == ["timeline-5c4b-a"]  # the Pending one is not running
    assert (timeline["projector_lag"], timeline["dead_letters"]) == (1500, 2)
    assert timeline["healthy"] is False
    assert desk["unreachable_metrics"] == ["service-desk-6f7a-a"]
    assert desk["healthy"] is False
    assert code == 1  # something is red
    assert all(f"/namespaces/{NAMESPACE}/" in r for r in state.requests)


def _green(state: State) -> None:
    """Every registered service's Deployment and its relay's, all well: nothing red."""
    from c360_platform import registry

    for spec in registry.services().values():
        api = state.deployment(spec.name, replicas=1, ready=1, image=IMAGE)
        if spec.name == registry.TIMELINE:
            held = 'c360_projector_active{consumer="timeline"} 1'
            state.pod(f"{spec.name}-1-a", api, metrics=_metrics(held))
        else:
            state.pod(f"{spec.name}-1-a", api, metrics=_metrics("c360_rpc_requests_total 0"))
        if spec.publishes_events:
            relay = state.deployment(f"{spec.name}-relay", replicas=1, ready=1, image=IMAGE)
            held = f'c360_relay_active{{source="{spec.name}"}} 1'
            state.pod(f"{spec.name}-relay-1-a", relay, metrics=_metrics(held))


@pytest.mark.parametrize(
    ("pod", "idle", "deployment", "lock"),
    [
        (
            "customer-relay-1-a",
            'c360_relay_active{source="customer"} 0',
            "customer-relay",
            "relay customer",
        ),
        (
            "timeline-1-a",
            'c360_projector_active{consumer="timeline"} 0',
            "timeline",
            "projector timeline",
        ),
    ],
)
def test_status_is_red_when_no_pod_holds_a_relay_or_the_projectors_lock(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pod: str,
    idle: str,
    deployment: str,
    lock: str,
) -> None:
    state = State()
    _green(state)
    kubeconfig = tmp_path / "kubeconfig"
    argv = ["ops", "status", "--kubeconfig", str(kubeconfig)]
    monkeypatch.setenv("COLUMNS", "100")
    with serve(state, kubeconfig, NAMESPACE):
        assert main([*argv, "--json"]) == 0
        capsys.readouterr()
        state.pods[pod].metrics = _metrics(idle)  # the lock is let go, and no one takes it
        code = main([*argv, "--json"])
        rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
        assert code == 1
        assert rows[deployment]["unheld_locks"] == [lock]
        assert rows[deployment]["healthy"] is False
        assert [name for name, row in rows.items() if row["unheld_locks"]] == [deployment]
        assert main(argv) == 1
        assert f"{lock}: no pod" in capsys.readouterr().out


def test_status_is_red_when_a_relay_stopped_at_an_event_too_large_for_nats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay publishes nothing from such an event on until max_payload is raised: the
    operator must see where it stopped."""
    state = State()
    _green(state)
    state.pods["customer-relay-1-a"].metrics = _metrics(
        'c360_relay_active{source="customer"} 1',
        'c360_relay_blocked_position{source="customer"} 1234',
    )
    kubeconfig = tmp_path / "kubeconfig"
    argv = ["ops", "status", "--kubeconfig", str(kubeconfig)]
    monkeypatch.setenv("COLUMNS", "100")
    with serve(state, kubeconfig, NAMESPACE):
        code = main([*argv, "--json"])
        rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
        assert code == 1
        assert rows["customer-relay"]["blocked_relays"] == ["relay customer at 1234"]
        assert rows["customer-relay"]["healthy"] is False
        assert [n for n, row in rows.items() if not row["healthy"]] == ["customer-relay"]
        assert main(argv) == 1
        shown = " ".join(capsys.readouterr().out.split())
        assert "relay customer at 1234: stopped, event too large for NATS" in shown


def test_status_does_not_wait_on_a_pod_whose_metrics_do_not_come(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod too busy to answer (or a proxy that hangs) is reported, not waited for: the
    status is wanted most when something is wrong."""
    import time

    from c360_cli import ops

    state = State()
    _green(state)
    kubeconfig = tmp_path / "kubeconfig"
    with serve(state, kubeconfig, NAMESPACE):
        # Green first, with the usual wait for metrics: 0.5 s was too short for a pod that
        # does answer on a loaded machine (a full test run beside another: exit 1).
        assert main(["ops", "status", "--kubeconfig", str(kubeconfig), "--json"]) == 0
        capsys.readouterr()
        monkeypatch.setattr(ops, "METRICS_TIMEOUT", 0.5)
        for pod in ("customer-1-a", "sales-1-a", "timeline-1-a"):
            state.pods[pod].metrics_delay = 3.0
        started = time.monotonic()
        assert main(["ops", "status", "--kubeconfig", str(kubeconfig), "--json"]) == 1
        took = time.monotonic() - started
    rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
    assert took < 2.5  # not 3 pods x 3 s
    assert [n for n, row in rows.items() if row["unreachable_metrics"]] == [
        "customer",
        "sales",
        "timeline",
    ]
    assert "timed out" in rows["timeline"]["metrics_errors"][0]
    assert rows["timeline"]["unknown_locks"] == ["projector timeline"]


def test_status_table_names_the_pods_holding_the_locks(
    cluster: tuple[State, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, kubeconfig = cluster
    monkeypatch.setenv("COLUMNS", "100")
    main(["ops", "status", "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr().out
    assert "relay customer: customer-relay-8c1e-a" in out
    assert "projector timeline: timeline-5c4b-a" in out
    assert "1/2" in out
    assert "1,500" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_the_namespace_flag_overrides_the_context(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A namespace without c360 (a mistyped -n, the wrong context) is not green: exit 1,
    saying what was looked for where."""
    state, kubeconfig = cluster
    for json_flag in ([], ["--json"]):
        argv = ["ops", "status", "-n", "elsewhere", "--kubeconfig", str(kubeconfig)]
        assert main([*argv, *json_flag]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert "no c360 Deployments in namespace elsewhere" in err
    assert set(state.requests) == {"GET /apis/apps/v1/namespaces/elsewhere/deployments"}


def test_status_is_red_for_a_registered_service_whose_deployment_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted Deployment (or an overlay without it) serves nothing and holds no lock."""
    state = State()
    _green(state)
    kubeconfig = tmp_path / "kubeconfig"
    argv = ["ops", "status", "--kubeconfig", str(kubeconfig)]
    monkeypatch.setenv("COLUMNS", "100")
    with serve(state, kubeconfig, NAMESPACE):
        assert main([*argv, "--json"]) == 0
        capsys.readouterr()
        del state.deployments["timeline"]
        del state.deployments["customer-relay"]
        assert main([*argv, "--json"]) == 1
        rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
        assert [n for n, row in rows.items() if row["missing"]] == ["customer-relay", "timeline"]
        assert [n for n, row in rows.items() if not row["healthy"]] == [
            "customer",  # its relay's lock is held nowhere: it runs in no Deployment
            "customer-relay",
            "timeline",
        ]
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert out.count("not deployed") == 2


def test_status_is_red_for_a_deployment_scaled_to_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubectl scale --replicas=0` forgotten after maintenance: nothing serves, and an
    autoscaler does not act on a Deployment at 0; 0/0 is not ready."""
    state = State()
    _green(state)
    state.deployment("customer", replicas=0, ready=0, image=IMAGE)
    kubeconfig = tmp_path / "kubeconfig"
    with serve(state, kubeconfig, NAMESPACE):
        assert main(["ops", "status", "--kubeconfig", str(kubeconfig), "--json"]) == 1
    rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
    assert [n for n, row in rows.items() if not row["healthy"]] == ["customer"]


def test_status_does_not_say_no_pod_holds_a_lock_when_it_could_not_read_the_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator whose Role lacks pods/proxy sees why the locks are unknown, not that
    every relay and the projector stopped."""
    state = State()
    _green(state)
    state.forbidden.add(("get", "pods/proxy"))
    kubeconfig = tmp_path / "kubeconfig"
    argv = ["ops", "status", "--kubeconfig", str(kubeconfig)]
    monkeypatch.setenv("COLUMNS", "100")
    with serve(state, kubeconfig, NAMESPACE):
        assert main([*argv, "--json"]) == 1
        rows = {d["name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
        assert all(not row["unheld_locks"] for row in rows.values())
        assert rows["timeline"]["unknown_locks"] == ["projector timeline"]
        assert rows["customer-relay"]["unknown_locks"] == ["relay customer"]
        (error,) = rows["customer-relay"]["metrics_errors"]
        assert error.startswith("metrics of customer-relay-1-a: 403 Forbidden: pods is forbidden")
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert "no pod" not in out
        assert "relay customer: unknown, no metrics" in " ".join(out.split())
        assert 'cannot get resource "pods/proxy"' in " ".join(err.split())


def test_rebuild_creates_the_job_with_the_running_image_and_follows_it(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    state.job_statuses = [{"active": 1}, {"active": 1}, {"succeeded": 1}]
    state.job_log = "read model rebuilt: 10 of 10 events applied"
    code = main(["ops", "rebuild", "--kubeconfig", str(kubeconfig), "--poll", "0.01", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["outcome"] == "succeeded"
    assert report["log"] == "read model rebuilt: 10 of 10 events applied"
    (job,) = state.jobs.values()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["command"][-2:] == ["timeline", "rebuild"]
    assert "timeline=timeline:50052" in container["command"]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_rebuild_without_a_timeline_deployment_asks_for_the_image(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """No Job with the manifests' bare image name `c360`, which no registry serves."""
    state, kubeconfig = cluster
    del state.deployments["timeline"]
    argv = ["ops", "rebuild", "--kubeconfig", str(kubeconfig), "--poll", "0.01"]
    assert main(argv) == 1
    assert "name one with --image" in " ".join(capsys.readouterr().err.split())
    assert state.jobs == {}
    state.job_statuses = [{"succeeded": 1}]
    assert main([*argv, "--image", IMAGE]) == 0
    (job,) = state.jobs.values()
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_a_failed_rebuild_exits_1(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    state.job_statuses = [{"failed": 1}]
    code = main(["ops", "rebuild", "--kubeconfig", str(kubeconfig), "--poll", "0.01", "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["outcome"] == "failed"


def test_rebuild_says_why_its_pod_has_not_started(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The Job counts a pod that cannot pull its image as active: "running" for an hour
    would hide that nothing runs."""
    state, kubeconfig = cluster
    state.job_statuses = [{"active": 1}]
    state.job_pod_waiting = {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "registry.example.com/c360:0.3.0"',
    }
    argv = ["ops", "rebuild", "--kubeconfig", str(kubeconfig), "--poll", "0.01", "--wait", "0.1"]
    assert main(argv) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "not started after 0.1 s: ImagePullBackOff: Back-off pulling image" in out
    assert "running" not in out
    assert main([*argv, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["outcome"] == "running"
    assert report["waiting"].startswith("ImagePullBackOff: Back-off pulling image")


def test_logs_prefix_each_line_with_its_pod(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = cluster
    code = main(["ops", "logs", "customer", "--tail", "2", "--kubeconfig", str(kubeconfig)])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "customer-7d9f-a | two",
        "customer-7d9f-a | three",
        "customer-7d9f-b | four",
        "customer-relay-8c1e-a | published 3",  # the service's relay is part of it
    ]


def test_logs_of_a_relay_alone(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = cluster
    assert main(["ops", "logs", "customer-relay", "--kubeconfig", str(kubeconfig)]) == 0
    assert capsys.readouterr().out.splitlines() == ["customer-relay-8c1e-a | published 3"]


def test_logs_of_a_pod_still_starting_do_not_hide_the_others(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A pod pulling its image or crash-looping is when the logs are needed: the others'
    are shown, the starting one's reason is on stderr, and the exit is 1 (partly failed)."""
    state, kubeconfig = cluster
    state.pods["customer-7d9f-b"].phase = "Pending"
    code = main(["ops", "logs", "customer", "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [
        "customer-7d9f-a | one",
        "customer-7d9f-a | two",
        "customer-7d9f-a | three",
        "customer-relay-8c1e-a | published 3",
    ]
    err = " ".join(err.split())
    assert "cannot read the log of customer-7d9f-b: 400 Bad Request" in err
    assert "is waiting to start" in err
    assert main(["ops", "logs", "customer", "--kubeconfig", str(kubeconfig), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report["pods"]) == {"customer-7d9f-a", "customer-relay-8c1e-a"}
    assert "is waiting to start" in report["errors"]["customer-7d9f-b"]


def test_logs_previous_shows_the_container_that_crashed(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    state.pods["customer-relay-8c1e-a"].previous_log = "relay customer: NATS refused the password"
    code = main(["ops", "logs", "customer-relay", "--previous", "--kubeconfig", str(kubeconfig)])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "customer-relay-8c1e-a | relay customer: NATS refused the password"
    ]


def test_rollout_restart_patches_the_pod_template_of_the_service_and_its_relay(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    code = main(["ops", "rollout-restart", "customer", "--kubeconfig", str(kubeconfig)])
    assert code == 0
    assert [name for name, _ in state.patches] == ["customer", "customer-relay"]
    for _, patch in state.patches:
        annotations = patch["spec"]["template"]["metadata"]["annotations"]
        assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert capsys.readouterr().out.count("restarting") == 2
    state.patches.clear()
    assert main(["ops", "rollout-restart", "timeline", "--kubeconfig", str(kubeconfig)]) == 0
    assert [name for name, _ in state.patches] == ["timeline"]  # it publishes nothing


def test_rollout_restart_all_restarts_every_services_deployments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from c360_platform import registry

    state = State()
    expected = []
    for spec in registry.services().values():
        names = [spec.name, f"{spec.name}-relay"] if spec.publishes_events else [spec.name]
        for name in names:
            state.deployment(name, replicas=1, ready=1, image=IMAGE)
        expected += names
    kubeconfig = tmp_path / "kubeconfig"
    with serve(state, kubeconfig, NAMESPACE):
        argv = ["ops", "rollout-restart", "--all", "--kubeconfig", str(kubeconfig), "--json"]
        assert main(argv) == 0
    assert [name for name, _ in state.patches] == expected
    assert json.loads(capsys.readouterr().out)["deployments"] == expected


def test_rollout_restart_restarts_the_others_when_one_deployment_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing Deployment (deleted, an overlay without it) does not stop the restart of the
    ones after it; it is named, and the exit is 1. A refusal (the same for every other) stops
    at once."""
    state = State()
    _green(state)
    del state.deployments["customer-relay"]
    kubeconfig = tmp_path / "kubeconfig"
    with serve(state, kubeconfig, NAMESPACE):
        argv = ["ops", "rollout-restart", "--all", "--kubeconfig", str(kubeconfig)]
        assert main([*argv, "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert "customer-relay" not in report["deployments"]
        assert set(report["deployments"]) == set(state.deployments)
        assert "cannot restart customer-relay: 404" in report["missing"]["customer-relay"]
        assert [name for name, _ in state.patches] == report["deployments"]
        state.forbidden.add(("patch", "deployments"))
        requests = len(state.requests)
        assert main(["ops", "rollout-restart", "--all", "--kubeconfig", str(kubeconfig)]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert "cannot restart customer: 403 Forbidden" in err
        assert len(state.requests) == requests + 1  # the same refusal awaits every other


def test_an_unknown_service_is_refused_without_calling_the_cluster(
    cluster: tuple[State, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, kubeconfig = cluster
    requests = len(state.requests)
    for argv in (["rollout-restart", "billing"], ["logs", "billing-relay"]):
        assert main(["ops", *argv, "--kubeconfig", str(kubeconfig)]) == 1
        assert "no service 'billing" in capsys.readouterr().err
    assert main(["ops", "rollout-restart", "--kubeconfig", str(kubeconfig)]) == 2
    assert "--all" in capsys.readouterr().err
    assert state.patches == []
    assert len(state.requests) == requests


def test_secrets_give_every_role_a_url_and_the_server_its_users(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    from c360_platform import natsauth

    assert main(["ops", "secrets", "--nats-url", "nats://nats:4222"]) == 0
    made = {d["metadata"]["name"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert "c360-tls-authority" in made
    assert "c360-auth-public" in made  # the token key pair, fresh (see the test below)
    assert "c360-auth" not in made  # no shared token secret any more
    auth, users = made["c360-nats-auth"], made["c360-nats-users"]
    assert set(users["stringData"]) == set(natsauth.roles())
    password = users["stringData"]["customer"].split(":")[2].split("@")[0]
    assert password in auth["stringData"]["auth.conf"]
    assert users["stringData"]["customer"].endswith("@nats:4222")


def test_secrets_give_each_service_a_token_of_its_own_and_the_key_to_the_operator_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ops secrets --only auth`: the signing key in a Secret of its own (the operator's), the
    public key every service checks with, and a token per service (and one for the rebuild
    Job) that the public key accepts; no service's Secret holds anything that signs."""
    import yaml

    from c360_platform import auth, registry

    assert main(["ops", "secrets", "--only", "auth"]) == 0
    made = {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all(
        capsys.readouterr().out)}  # fmt: skip
    key = auth.SigningKey.from_pem(made["c360-auth-signing"]["signing.pem"].encode())
    public = made["c360-auth-public"]["public.pem"]
    assert public == key.public_pem().decode() == made["c360-auth-signing"]["public.pem"]
    checker = auth.Authority.of(public)
    assert checker is not None
    for name in registry.services():
        held = made[f"c360-token-{name}"]
        assert set(held) == {"token"}
        principal = checker.verify(held["token"])
        assert (principal.subject, principal.role) == (f"service:{name}", auth.Role.SERVICE)
    rebuild = checker.verify(made["c360-token-timeline-rebuild"]["token"])
    assert rebuild.role == auth.Role.OPERATOR
    for name, data in made.items():
        if name != "c360-auth-signing":
            assert not any("PRIVATE KEY" in v for v in data.values()), name
    # The keys apart from the tokens (`kubectl apply -l`: the move to the key pair).
    assert main(["ops", "secrets", "--only", "auth"]) == 0
    labels = {d["metadata"]["name"]: d["metadata"]["labels"]["c360.io/secret"] for d in
              yaml.safe_load_all(capsys.readouterr().out)}  # fmt: skip
    assert labels["c360-auth-signing"] == "signing-key"
    assert labels["c360-auth-public"] == "public-key"
    assert all(n.startswith("c360-token-") for n, kind in labels.items() if kind == "token")


def test_secrets_give_each_service_a_postgresql_role_of_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ops secrets --only postgres`: per service, the password of its role (the shape
    CloudNativePG's managed roles read) and the URL it connects with as that role."""
    from urllib.parse import urlsplit

    import yaml

    assert main(["ops", "secrets", "--only", "postgres", "-n", "crm"]) == 0
    made = {d["metadata"]["name"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert set(made) == {f"c360-pg-{name}" for name in registry.services()}
    passwords = set()
    for name, spec in registry.services().items():
        secret = made[f"c360-pg-{name}"]
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["metadata"]["labels"]["cnpg.io/reload"] == "true"
        data = secret["stringData"]
        assert data["username"] == f"c360_{spec.schemas[0]}"
        url = urlsplit(data["uri"])
        assert (url.username, url.password) == (data["username"], data["password"])
        assert (url.hostname, url.port, url.path) == ("c360-pg-rw.crm", 5432, "/c360")
        passwords.add(data["password"])
    assert len(passwords) == len(registry.services())


def test_secrets_give_each_service_a_certificate_for_its_service_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from c360_platform import registry

    argv = ["ops", "secrets", "-n", "crm", "--cluster-domain", "k8s.example"]
    assert main(argv) == 0
    secrets = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(capsys.readouterr().out)
        if d["type"] == "kubernetes.io/tls"
    }
    expected = {"c360-tls-authority", "c360-tls-operator", "c360-tls-integration"}
    expected |= {f"c360-tls-{name}" for name in registry.services()}
    assert set(secrets) == expected
    authority = x509.load_pem_x509_certificate(
        secrets["c360-tls-authority"]["stringData"]["tls.crt"].encode()
    )
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "ca.crt" not in secrets["c360-tls-authority"]["stringData"]
    public = authority.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for name, secret in secrets.items():
        if name == "c360-tls-authority":
            continue
        data = secret["stringData"]
        assert data["ca.crt"] == secrets["c360-tls-authority"]["stringData"]["tls.crt"]
        cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
        cert.verify_directly_issued_by(authority)
        service = name.removeprefix("c360-tls-")
        if service in registry.services():
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert names.value.get_values_for_type(x509.DNSName) == [
                service,
                f"{service}.crm",
                f"{service}.crm.svc",
                f"{service}.crm.svc.k8s.example",
            ]


@pytest.mark.parametrize(
    ("argv", "denied", "what"),
    [
        (["status"], ("list", "deployments"), "cannot list deployments in c360-test"),
        (["status"], ("list", "pods"), "cannot list the pods of customer in c360-test"),
        (["logs", "customer"], ("list", "pods"), "cannot list the pods of customer in"),
        (["logs", "customer"], ("get", "pods/log"), "cannot read the log of customer-7d9f-a"),
        (["rollout-restart", "customer"], ("patch", "deployments"), "cannot restart customer"),
        (["rebuild", "--poll", "0.01"], ("create", "jobs"), "cannot create the Job"),
        (
            ["rebuild", "--poll", "0.01"],
            ("get", "deployments"),
            "cannot read the image of the timeline Deployment in c360-test (name one with",
        ),
        (["rebuild", "--poll", "0.01"], ("get", "jobs/status"), "cannot follow the Job"),
    ],
)
def test_a_permission_the_operator_lacks_is_named_in_one_line(
    cluster: tuple[State, Path],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    denied: tuple[str, str],
    what: str,
) -> None:
    """A Role without what a command needs: the API server's refusal, which names the verb,
    the resource and the user, in one line on stderr, and exit 1 (no traceback)."""
    state, kubeconfig = cluster
    state.forbidden.add(denied)
    assert main(["ops", *argv, "--kubeconfig", str(kubeconfig)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert what in err
    assert f'403 Forbidden: {denied[1].split("/")[0]} is forbidden: User "tester" cannot' in err
    assert f'{denied[0]} resource "{denied[1]}"' in err
    assert "Traceback" not in err


def test_an_api_server_that_does_not_answer_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with serve(State(), kubeconfig, NAMESPACE):
        pass  # the server is gone; its kubeconfig stays
    for argv in (["status"], ["logs", "customer"], ["rollout-restart", "customer"]):
        assert main(["ops", *argv, "--kubeconfig", str(kubeconfig)]) == 1
        err = capsys.readouterr().err
        assert "the API server did not answer" in err
        assert "Connection refused" in err
        assert "Traceback" not in err


AUTH_SECRETS = {
    "c360-auth-signing",
    "c360-auth-public",
    "c360-token-timeline-rebuild",
    *(f"c360-token-{name}" for name in registry.services()),
}


@pytest.mark.parametrize(
    ("only", "names"),
    [
        (["auth"], AUTH_SECRETS),
        (["nats"], {"c360-nats-auth", "c360-nats-users"}),
        (["auth", "nats"], {*AUTH_SECRETS, "c360-nats-auth", "c360-nats-users"}),
    ],
)
def test_secrets_only_rotates_what_is_named(
    capsys: pytest.CaptureFixture[str], only: list[str], names: set[str]
) -> None:
    """Rotating the NATS passwords must not also replace the token signing key (every token
    refused) and the certificate authority (pods restarted with the new one refuse calls
    from those not yet restarted, and the integrations' certificates stop working)."""
    import yaml

    argv = ["ops", "secrets", *(a for kind in only for a in ("--only", kind))]
    assert main(argv) == 0
    assert {d["metadata"]["name"] for d in yaml.safe_load_all(capsys.readouterr().out)} == names
    assert main(["ops", "secrets", "--only", "tls"]) == 0
    made = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["type"] for d in made} == {"kubernetes.io/tls"}


def test_the_kek_is_made_only_when_named_and_replaced_only_keeping_the_old_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`c360 ops secrets` without --only must not make a new KEK (applied, it would replace
    the one the data keys are wrapped under, leaving every key unreadable); named, it makes
    one, and with --keep-keks puts it before the ones the keys are wrapped under now."""
    import yaml

    from c360_platform.keywrap import KeyWrap, new_kek

    assert main(["ops", "secrets"]) == 0
    every = {d["metadata"]["name"] for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert "c360-key-wrap" not in every
    assert main(["ops", "secrets", "--only", "key-wrap"]) == 0
    [made] = list(yaml.safe_load_all(capsys.readouterr().out))
    assert made["metadata"]["name"] == "c360-key-wrap"
    first = made["stringData"]["keks"]
    assert len(KeyWrap.parse(first).ids()) == 1
    older = new_kek()
    assert main(["ops", "secrets", "--only", "key-wrap", "--keep-keks", f"{first},{older}"]) == 0
    [again] = list(yaml.safe_load_all(capsys.readouterr().out))
    rotated = again["stringData"]["keks"].split(",")
    assert rotated[1:] == [first, older]
    assert KeyWrap.parse(rotated[0]).current != KeyWrap.parse(first).current
    assert main(["ops", "secrets", "--only", "key-wrap", "--keep-keks", "not-a-kek"]) == 2
    err = capsys.readouterr().err
    assert "--keep-keks: C360_KEY_WRAP_KEY: each key must be base64 of 32" in err
    assert "Traceback" not in err


def test_prepare_waits_for_postgresql_and_nats_to_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a new install the Job starts while PostgreSQL and NATS are still starting: it
    waits for them (saying why), instead of failing its few attempts and leaving the streams,
    which no service may create, to no one."""
    from c360_platform import natsauth, pgroles, pgstore

    refusals = {"postgres": 2, "nats": 2, "roles": 2}
    made: list[str] = []
    handed: list[dict[str, list[str]]] = []

    def hand_over(url: str, owned: dict[str, list[str]], creators: list[str]) -> object:
        if refusals["roles"]:
            refusals["roles"] -= 1
            raise pgroles.RolesMissing("no role c360_customer yet (each service's own)")
        assert creators == ["timeline"]
        handed.append(owned)
        return owned

    def ensure_schema(url: str, schema: str) -> None:
        if refusals["postgres"]:
            refusals["postgres"] -= 1
            raise OSError("connection to server at 10.0.0.7, port 5432 failed")
        made.append(schema)

    async def prepare_streams(url: str) -> list[str]:
        if refusals["nats"]:
            refusals["nats"] -= 1
            raise TimeoutError("no JetStream leader yet")
        return ["C360"]

    monkeypatch.setattr(pgstore, "ensure_schema", ensure_schema)
    monkeypatch.setattr(natsauth, "prepare_streams", prepare_streams)
    monkeypatch.setattr(pgroles, "hand_over", hand_over)
    monkeypatch.setenv("C360_POSTGRES_URL", "postgresql://c360:pw@c360-pg-rw:5432/c360")
    assert main(["ops", "prepare", "--poll", "0", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["streams"] == ["C360"]
    assert made == json.loads(out)["schemas"]
    # Each service's role (the Cluster's managed roles) is waited for and given its schemas.
    assert err.count("waiting for the services' PostgreSQL roles: RolesMissing") == 2
    (owned,) = handed
    assert list(owned["c360_customer"]) == ["customer"]
    assert json.loads(out)["roles"] == list(owned)
    assert [s for schemas in owned.values() for s in schemas] == made
    assert err.count("waiting for PostgreSQL: OSError: connection to server at") == 2
    assert err.count("waiting for NATS JetStream: TimeoutError: no JetStream leader") == 2

    refusals["nats"] = 1000
    assert main(["ops", "prepare", "--poll", "0", "--wait", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "NATS JetStream not ready after 0.2 s (--wait): TimeoutError" in " ".join(err.split())
