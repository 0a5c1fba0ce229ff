"""`c360 ops`: operating c360 on Kubernetes through the `kubernetes` client.

    c360 ops status                  per Deployment: replicas, lock holders, lags, dead letters
    c360 ops rebuild                 create the `timeline rebuild` Job and follow it
    c360 ops logs SERVICE            the logs of a service's pods (API and relay)
    c360 ops rollout-restart SERVICE restart a service's pods one by one (as kubectl does),
                                     its relay's too
    c360 ops prepare                 (in the prepare Job) schemas and JetStream streams
    c360 ops secrets                 print the Secrets (tokens, NATS users, certificates) to pipe
                                     into `kubectl apply -f -`

The cluster comes from --kubeconfig/--context (else $KUBECONFIG or ~/.kube/config), or from the
pod's service account when run in a cluster; the namespace from -n, else the context's, else
`c360`. The Job and pod settings the generated manifests share (tools/render_deploy.py) live
here too, so that a Job this command creates is the one deploy/ describes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from c360_cli.errors import EXIT_BAD_INPUT, CliError
from c360_cli.output import Output
from c360_platform import registry

T = TypeVar("T")

IMAGE = "c360"
"""The image name in the manifests; overlays (kustomize `images:`) say where it comes from."""
SETTINGS = "c360-settings"
"""The ConfigMap of non-secret settings every c360 pod reads."""
POSTGRES_SECRET = "c360-pg-app"  # noqa: S105 (a Secret's name)
"""The Secret with the administrator's PostgreSQL URL (key `uri`), the application owner's,
which only the prepare Job reads: CloudNativePG makes it for the Cluster c360-pg; without the
component, the operator provides one of that name."""
PG_DATABASE = "c360"
"""The database of the Cluster (its bootstrap), whose name each service's role begins with."""
PG_HOST = "c360-pg-rw"
"""The Cluster's read-write Service, which every c360 process connects to."""
PG_ADMIN_ROLE = "c360"
"""The Cluster's application owner (the prepare Job's role): a member of each service's role,
to hand it its schemas (`pgroles.hand_over`)."""


def postgres_secret(service: str) -> str:
    """The Secret of a service's own PostgreSQL role (kubernetes.io/basic-auth: `username`,
    `password`, and `uri`, the URL the service connects with; `c360 ops secrets`)."""
    return f"c360-pg-{service}"


def postgres_role(service: str) -> str:
    """The PostgreSQL role of a service on the cluster: owns its schemas and nothing else."""
    from c360_platform import pgroles

    return pgroles.role_name(PG_DATABASE, registry.service(service).schemas[0])


NATS_SECRET = "c360-nats-users"  # noqa: S105
"""The Secret with each role's NATS URL and credentials, one key per role (`c360 ops secrets`)."""
AUTH_SECRET = "c360-auth"  # noqa: S105
"""The Secret of the revoked tokens' holders (key `revoked`, `c360 token revoke`'s document)
and, only in a deployment still moving to the key pair, the old shared token secret (key
`secret`, optional: removing the key ends the move; `c360 ops secrets` makes none)."""
AUTH_PUBLIC_SECRET = "c360-auth-public"  # noqa: S105
"""The public key every service checks tokens with (key `public.pem`; `c360 ops secrets`)."""
AUTH_SIGNING_SECRET = "c360-auth-signing"  # noqa: S105
"""The operator's signing key (keys `signing.pem`, `public.pem`): issues tokens
(`c360 token create --signing-key`). No pod mounts it or reads it."""
REBUILD_TOKEN_HOLDER = "timeline-rebuild"  # noqa: S105 (a holder's name)
"""The rebuild Job's token Secret (c360-token-timeline-rebuild, role operator)."""
NATS_AUTH_SECRET = "c360-nats-auth"  # noqa: S105
"""The Secret with the NATS server's authorization block (auth.conf)."""
TLS_AUTHORITY_SECRET = "c360-tls-authority"  # noqa: S105
"""The deployment's certificate authority (tls.crt, tls.key): the shape a cert-manager CA
Issuer reads, so cert-manager can issue and renew the certificates below instead."""
TLS_MOUNT = "/etc/c360/tls"
"""Where a pod finds its certificate (tls.crt, tls.key) and the authority's (ca.crt)."""
TLS_CLIENTS = ("operator", "integration")
"""Certificates for callers that serve nothing: Jobs and people running the CLI (operator),
integrations such as an ERP bridge (integration)."""


def relay_deployment(service: str) -> str:
    """The Deployment of an event-publishing service's outbox relay (`c360-service NAME
    --relay`), beside the service's own Deployment of API pods."""
    return f"{service}-relay"


def deployments_of(name: str) -> list[str]:
    """The Deployments `c360 ops logs` and `rollout-restart` act on for `name`: a service's
    API and, if it publishes events, its relay; or `NAME-relay`, the relay alone. A name
    that is neither is refused, naming the services."""
    services = registry.services()
    if name in services:
        spec = services[name]
        return [name, relay_deployment(name)] if spec.publishes_events else [name]
    relays = {relay_deployment(s.name): s.name for s in registry.event_sources()}
    if name in relays:
        return [name]
    raise CliError(
        f"no service {name!r}; installed: {', '.join(services)}"
        f" (or a service's relay alone: {', '.join(relays)})"
    )


def tls_secret(identity: str) -> str:
    """The kubernetes.io/tls Secret of a service's certificate, or of a client's."""
    return f"c360-tls-{identity}"


def tls_env(identity: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The environment, volume and mount that give a pod `identity`'s certificate: its ports
    then serve mutual TLS and its channels show the certificate (c360_platform.tls)."""
    env = [
        {"name": "C360_TLS_CA", "value": f"{TLS_MOUNT}/ca.crt"},
        {"name": "C360_TLS_CERT", "value": f"{TLS_MOUNT}/tls.crt"},
        {"name": "C360_TLS_KEY", "value": f"{TLS_MOUNT}/tls.key"},
    ]
    # 0440: owned by root, group fsGroup (10001, the process's group); nobody else reads it.
    volume = {
        "name": "tls",
        "secret": {"secretName": tls_secret(identity), "defaultMode": 0o440},
    }
    mount = {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True}
    return env, volume, mount


PART_OF = "app.kubernetes.io/part-of=c360"
METRICS_PORT = 9090
NAMESPACE = "c360"

POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
JOB_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


def token_secret(holder: str) -> str:
    """The Secret (key `token`) of one holder's own bearer token: a service's (its name), or
    a Job's (REBUILD_TOKEN_HOLDER); `c360 ops secrets` makes them."""
    return f"c360-token-{holder}"


def credentials_env(role: str) -> list[dict[str, Any]]:
    """The environment a c360 process of `role` (a service's name, or admin) gets from
    Secrets (never from git): a service its own PostgreSQL role's URL, admin the owner's; and
    the key-encryption keys the data keys in the database are wrapped under (`keywrap`)."""
    database = POSTGRES_SECRET if role == "admin" else postgres_secret(role)
    return [
        {
            "name": "C360_POSTGRES_URL",
            "valueFrom": {"secretKeyRef": {"name": database, "key": "uri"}},
        },
        {"name": "NATS_URL", "valueFrom": {"secretKeyRef": {"name": NATS_SECRET, "key": role}}},
        key_wrap_env(),
    ]


KEY_WRAP_SECRET = "c360-key-wrap"  # noqa: S105 (a name)
"""The KEKs (key `keks`, the current one first): `c360 ops secrets --only key-wrap`."""


def key_wrap_env() -> dict[str, Any]:
    """C360_KEY_WRAP_KEY from c360-key-wrap. Optional: a deployment made before it keeps its
    keys as they are until the Secret exists (each process says so at start), then wraps them
    as its pods restart."""
    return {
        "name": "C360_KEY_WRAP_KEY",
        "valueFrom": {"secretKeyRef": {"name": KEY_WRAP_SECRET, "key": "keks", "optional": True}},
    }


def key_wrap_manifests(keep: str = "") -> list[dict[str, Any]]:
    """The KEK Secret: a new KEK, then the ones `keep` names (those the keys are wrapped under
    now: each service wraps them again under the new one as it restarts; remove them once
    every pod has, and destroy them to make the backups from before unreadable)."""
    from c360_platform import keywrap

    old = [k.strip() for k in keep.replace("\n", ",").split(",") if k.strip()]
    if old:
        try:
            keywrap.KeyWrap.parse(",".join(old))
        except ValueError as bad:
            raise CliError(f"--keep-keks: {bad}", EXIT_BAD_INPUT) from None
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": KEY_WRAP_SECRET,
                "labels": {"app.kubernetes.io/part-of": "c360", "c360.io/secret": "key-wrap"},
            },
            "type": "Opaque",
            "stringData": {"keks": ",".join([keywrap.new_kek(), *old])},
        }
    ]


def legacy_secret_env() -> dict[str, Any]:
    """C360_AUTH_SECRET from the key `secret` of c360-auth, if it still has one: a deployment
    moving to the key pair (deploy/README.md, "Moving to signed tokens"); none otherwise."""
    return {
        "name": "C360_AUTH_SECRET",
        "valueFrom": {"secretKeyRef": {"name": AUTH_SECRET, "key": "secret", "optional": True}},
    }


def token_env(holder: str) -> list[dict[str, Any]]:
    """What a process needs to call the services and (a service) to check who calls it: its
    own token (optional only while a deployment moves to the key pair: the pods still sign
    their own with the old secret until these Secrets exist) and the public key. Never the
    signing key."""
    return [
        {
            "name": "C360_AUTH_PUBLIC_KEY",
            "valueFrom": {"secretKeyRef": {"name": AUTH_PUBLIC_SECRET, "key": "public.pem"}},
        },
        {
            "name": "C360_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": token_secret(holder), "key": "token", "optional": True}
            },
        },
        legacy_secret_env(),
    ]


def job(
    name: str, command: list[str], *, role: str | None, labels: dict[str, str]
) -> dict[str, Any]:
    """A hardened Job running the c360 CLI (with `role`'s credentials, if it needs any)."""
    pod_labels = {"app.kubernetes.io/part-of": "c360", **labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": pod_labels},
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "c360",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": command,
                            "envFrom": [{"configMapRef": {"name": SETTINGS}}],
                            "env": credentials_env(role) if role else [],
                            "resources": JOB_RESOURCES,
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def rebuild_job(name: str = "c360-timeline-rebuild", image: str = IMAGE) -> dict[str, Any]:
    """The Job that runs `c360 timeline rebuild` against the timeline Service."""
    timeline = registry.service(registry.TIMELINE)
    command = [
        "c360",
        "--addr",
        f"{timeline.name}={timeline.name}:{timeline.default_port}",
        "timeline",
        "rebuild",
    ]
    # It only calls the timeline's API: no database or NATS credentials, only an operator's
    # token of its own (RebuildReadModel is an operator's), never the signing key.
    made = job(name, command, role=None, labels={"app.kubernetes.io/component": "rebuild"})
    # It calls the timeline's port, which serves mutual TLS: the operator's certificate.
    env, volume, mount = tls_env("operator")
    pod = made["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [
        {
            "name": "C360_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": token_secret(REBUILD_TOKEN_HOLDER),
                    "key": "token",
                    "optional": True,
                }
            },
        },
        legacy_secret_env(),  # signs its own token while a deployment moves to the key pair
        *env,
    ]
    pod["containers"][0]["volumeMounts"].append(mount)
    pod["volumes"].append(volume)
    made["spec"]["backoffLimit"] = 0
    pod["containers"][0]["image"] = image
    return made


def prepare_job(name: str = "c360-prepare") -> dict[str, Any]:
    """The Job that creates the schemas and streams (`c360 ops prepare`), as the admin role."""
    made = job(
        name,
        ["c360", "ops", "prepare"],
        role="admin",
        labels={"app.kubernetes.io/component": "prepare"},
    )
    made["spec"]["ttlSecondsAfterFinished"] = 600
    return made


# -- the cluster ---------------------------------------------------------------------------


@dataclass
class Cluster:
    """The API clients and the namespace the command works in."""

    apps: Any
    core: Any
    batch: Any
    namespace: str
    proxy: Any = None
    """The core API for reads through the pod proxy (no retries); `core` if None."""


def connect(args: argparse.Namespace) -> Cluster:
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # the client's config module is untyped

    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    namespace = args.namespace
    if kubeconfig or default.is_file() or args.context:
        try:
            config.load_kube_config(config_file=kubeconfig, context=args.context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if args.context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == args.context), active)
        except (config.ConfigException, OSError) as exc:
            raise CliError(f"cannot load the kubeconfig: {exc}") from None
        namespace = namespace or (active or {}).get("context", {}).get("namespace")
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException as exc:
            raise CliError(f"no kubeconfig and not in a cluster: {exc}") from None
        ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        namespace = namespace or (ns_file.read_text().strip() if ns_file.is_file() else None)
    # A read through the pod proxy is not retried: a pod that did not answer in time is
    # reported as such (urllib3 would ask it 3 times more, each with the whole timeout).
    once = client.Configuration.get_default_copy()
    once.retries = False
    return Cluster(
        apps=client.AppsV1Api(),
        core=client.CoreV1Api(),
        batch=client.BatchV1Api(),
        namespace=namespace or NAMESPACE,
        proxy=client.CoreV1Api(client.ApiClient(once)),
    )


def _api_error(exc: Exception, what: str) -> CliError:
    """What the API server said (its Status message names the verb, resource and user a
    refusal is about), or that it could not be reached."""
    status = getattr(exc, "status", None)
    if status:
        detail = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            detail = str(json.loads(getattr(exc, "body", None) or "{}").get("message") or "")
        reason = getattr(exc, "reason", None) or ""
        return CliError(f"{what}: {status} {reason}" + (f": {detail}" if detail else ""))
    cause = getattr(exc, "reason", None) or exc
    return CliError(f"{what}: the API server did not answer ({cause})")


def _api(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One call to the API server; its failure a CliError saying `what` could not be done."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise _api_error(exc, what) from None


# -- status --------------------------------------------------------------------------------


@dataclass
class PodMetrics:
    """What a pod's /metrics says about its locks and lags."""

    relay_active: dict[str, bool] = field(default_factory=dict)
    relay_lag: dict[str, float] = field(default_factory=dict)
    relay_blocked: dict[str, int] = field(default_factory=dict)
    """Sources whose relay stopped at an event too large for NATS: its position."""
    projector_active: dict[str, bool] = field(default_factory=dict)
    projector_lag: dict[str, float] = field(default_factory=dict)
    dead_letters: float | None = None


def parse_metrics(text: str) -> PodMetrics:
    found = PodMetrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "c360_relay_active":
                found.relay_active[labels.get("source", "")] = value >= 1
            elif sample.name == "c360_relay_lag_events":
                found.relay_lag[labels.get("source", "")] = value
            elif sample.name == "c360_relay_blocked_position" and value > 0:
                found.relay_blocked[labels.get("source", "")] = int(value)
            elif sample.name == "c360_projector_active":
                found.projector_active[labels.get("consumer", "")] = value >= 1
            elif sample.name == "c360_projector_lag_messages":
                found.projector_lag[labels.get("consumer", "")] = value
            elif sample.name == "c360_dead_letters":
                found.dead_letters = value
    return found


METRICS_TIMEOUT = 5.0
"""Seconds a pod's /metrics may take through the proxy: a pod too busy to answer (or a proxy
that hangs) is reported as such instead of holding `c360 ops status` up."""


def pod_metrics(cluster: Cluster, pod: str) -> PodMetrics | str:
    """A pod's metrics through the API server's pod proxy, or why they could not be read
    (the pod does not answer; the operator may not use the proxy)."""
    try:
        text = (cluster.proxy or cluster.core).connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{METRICS_PORT}",
            cluster.namespace,
            "metrics",
            _request_timeout=METRICS_TIMEOUT,
        )
    except Exception as exc:
        return _api_error(exc, f"metrics of {pod}").message
    return parse_metrics(text if isinstance(text, str) else str(text))


@dataclass
class Row:
    service: str
    desired: int
    ready: int
    pods: list[str]
    leaders: list[str]
    relay_lag: float | None
    projector_lag: float | None
    dead_letters: float | None
    unreachable: list[str]
    unheld: list[str] = field(default_factory=list)
    """The locks this Deployment's pods should hold and none does (`relay customer`)."""
    blocked: list[str] = field(default_factory=list)
    """Its relays stopped at an event too large for NATS (`relay customer at 1234`)."""
    unknown: list[str] = field(default_factory=list)
    """The locks this Deployment's pods should hold, none of the pods whose metrics were
    read does, and others' metrics could not be read: who holds them is not known."""
    metrics_errors: list[str] = field(default_factory=list)
    """Why a pod's metrics could not be read (`metrics of POD: 403 Forbidden: ...`)."""
    missing: bool = False
    """A registered service's Deployment (or its relay's) that the namespace does not have."""

    @property
    def healthy(self) -> bool:
        return (
            not self.missing
            and self.desired >= 1  # scaled to 0: nothing serves (and no autoscaler acts on it)
            and self.ready >= self.desired
            and not self.unreachable
            and not self.unheld
            and not self.blocked
            and not (self.dead_letters or 0)
            and (self.relay_lag or 0) < LAG_WARNING
            and (self.projector_lag or 0) < LAG_WARNING
        )


LAG_WARNING = 1000
"""A lag at or above this many events or messages shows red."""


def _selector(match: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


def collect(cluster: Cluster) -> list[Row]:
    deployments = _api(
        f"cannot list deployments in {cluster.namespace}",
        cluster.apps.list_namespaced_deployment,
        cluster.namespace,
        label_selector=PART_OF,
    ).items
    rows: list[Row] = []
    if not deployments:
        raise CliError(
            f"no c360 Deployments in namespace {cluster.namespace} (none labelled {PART_OF}):"
            " is c360 installed there? Name its namespace with -n."
        )
    held: set[str] = set()
    running: dict[str, list[str]] = {}
    for deployment in deployments:
        name = deployment.metadata.name
        selector = _selector(deployment.spec.selector.match_labels or {})
        pods = _api(
            f"cannot list the pods of {name} in {cluster.namespace}",
            cluster.core.list_namespaced_pod,
            cluster.namespace,
            label_selector=selector,
        ).items
        running[name] = sorted(
            p.metadata.name for p in pods if p.status and p.status.phase == "Running"
        )
    # Every pod's metrics side by side: pods that answer late delay the table by one timeout.
    every = [pod for names in running.values() for pod in names]
    with ThreadPoolExecutor(max_workers=16) as pool:
        metrics = dict(
            zip(every, pool.map(lambda pod: pod_metrics(cluster, pod), every), strict=True)
        )
    for deployment in sorted(deployments, key=lambda d: d.metadata.name):
        name = deployment.metadata.name
        names = running[name]
        leaders: list[str] = []
        relay_lag = projector_lag = dead = None
        unreachable: list[str] = []
        errors: list[str] = []
        blocked: list[str] = []
        for pod in names:
            found = metrics[pod]
            if isinstance(found, str):
                unreachable.append(pod)
                errors.append(found)
                continue
            for source, active in found.relay_active.items():
                if active:
                    leaders.append(f"relay {source}: {pod}")
                    relay_lag = found.relay_lag.get(source, relay_lag)
                    if source in found.relay_blocked:
                        blocked.append(f"relay {source} at {found.relay_blocked[source]}")
            for consumer, active in found.projector_active.items():
                if active:
                    leaders.append(f"projector {consumer}: {pod}")
                    projector_lag = found.projector_lag.get(consumer, projector_lag)
                    dead = found.dead_letters
        status = deployment.status
        held.update(leader.partition(":")[0] for leader in leaders)
        rows.append(
            Row(
                service=name,
                desired=deployment.spec.replicas or 0,
                ready=(status.ready_replicas or 0) if status else 0,
                pods=names,
                leaders=leaders,
                relay_lag=relay_lag,
                projector_lag=projector_lag,
                dead_letters=dead,
                unreachable=unreachable,
                blocked=blocked,
                metrics_errors=errors,
            )
        )
    present = {row.service for row in rows}
    for spec in registry.services().values():
        wanted = [spec.name, relay_deployment(spec.name)] if spec.publishes_events else [spec.name]
        for name in wanted:
            if name not in present:
                rows.append(Row(name, 0, 0, [], [], None, None, None, [], missing=True))
    rows.sort(key=lambda row: row.service)
    _unheld_locks(rows, held)
    return rows


def _unheld_locks(rows: list[Row], held: set[str]) -> None:
    """Mark each lock that some pod should hold and none does on the Deployment that runs it:
    an event source's relay (its NAME-relay Deployment, else its API's, where the relay runs
    inline) and the timeline's projector. A publishing service whose relay no pod holds
    publishes nothing, and a timeline without its projector shows nothing new."""
    by_name = {row.service: row for row in rows}
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (f"relay {spec.name}", (relay_deployment(spec.name), spec.name))
        for spec in registry.event_sources()
    ]
    wanted.append((f"projector {registry.TIMELINE}", (registry.TIMELINE,)))
    for lock, runners in wanted:
        row = next(
            (by_name[name] for name in runners if name in by_name and not by_name[name].missing),
            None,
        )
        if row is None or lock in held:
            continue
        # A pod whose metrics were not read may hold it: unknown, not "no pod".
        (row.unknown if row.unreachable else row.unheld).append(lock)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _holders(row: Row) -> Text | str:
    if row.missing:
        return Text("not deployed", style="bold red")
    lines = [Text(leader) for leader in row.leaders]
    lines += [Text(f"{lock}: no pod", style="bold red") for lock in row.unheld]
    lines += [Text(f"{lock}: unknown, no metrics", style="bold red") for lock in row.unknown]
    lines += [
        Text(f"{relay}: stopped, event too large for NATS", style="bold red")
        for relay in row.blocked
    ]
    if not lines:
        return "no metrics" if row.unreachable else "-"
    return Text("\n").join(lines)


def _status(args: argparse.Namespace) -> int:
    cluster = connect(args)
    rows = collect(cluster)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "namespace": cluster.namespace,
                "deployments": [
                    {
                        "name": r.service,
                        "desired": r.desired,
                        "ready": r.ready,
                        "pods": r.pods,
                        "leaders": r.leaders,
                        "relay_lag": r.relay_lag,
                        "projector_lag": r.projector_lag,
                        "dead_letters": r.dead_letters,
                        "unreachable_metrics": r.unreachable,
                        "unheld_locks": r.unheld,
                        "unknown_locks": r.unknown,
                        "metrics_errors": r.metrics_errors,
                        "blocked_relays": r.blocked,
                        "missing": r.missing,
                        "healthy": r.healthy,
                    }
                    for r in rows
                ],
            }
        )
        return 0 if all(r.healthy for r in rows) else 1

    def red(text: str, bad: bool) -> Text:
        return Text(text, style="bold red" if bad else "")

    out.table(
        ["deployment", "ready", "lock holders", "relay lag", "proj. lag", "dead"],
        [
            [
                red(r.service, not r.healthy),
                red(
                    "-" if r.missing else f"{r.ready}/{r.desired}",
                    r.ready < r.desired or r.desired < 1,
                ),
                _holders(r),
                red(_figure(r.relay_lag), (r.relay_lag or 0) >= LAG_WARNING),
                red(_figure(r.projector_lag), (r.projector_lag or 0) >= LAG_WARNING),
                red(_figure(r.dead_letters), bool(r.dead_letters)),
            ]
            for r in rows
        ],
        caption=f"namespace {cluster.namespace}",
    )
    for error in dict.fromkeys(e for r in rows for e in r.metrics_errors):
        out.note(error)
    return 0 if all(r.healthy for r in rows) else 1


# -- rebuild -------------------------------------------------------------------------------


def _rebuild(args: argparse.Namespace) -> int:
    cluster = connect(args)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    name = f"c360-timeline-rebuild-{stamp}"
    image = args.image or _running_image(cluster)
    body = rebuild_job(name, image)
    try:
        cluster.batch.create_namespaced_job(cluster.namespace, body)
    except Exception as exc:
        raise _api_error(exc, f"cannot create the Job {name}") from None
    out = Output(args.json)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out.err,
        transient=args.json,
    )
    outcome = "running"
    waiting: str | None = None
    deadline = time.monotonic() + args.wait
    with progress:
        task = progress.add_task(f"Job {name}: starting")
        while time.monotonic() < deadline:
            status = _api(
                f"cannot follow the Job {name} (it was created and runs on)",
                cluster.batch.read_namespaced_job_status,
                name,
                cluster.namespace,
            ).status
            active, done, failed = status.active or 0, status.succeeded or 0, status.failed or 0
            if done:
                outcome = "succeeded"
                break
            if failed:
                outcome = "failed"
                break
            # A Job counts a pod that cannot start (its image not pulled, a Secret missing)
            # as active: its container's waiting reason says what it is waiting for.
            waiting = _job_waiting(cluster, name)
            state = f"waiting, {waiting}" if waiting else "running" if active else "pending"
            progress.update(task, description=f"Job {name}: {state}")
            time.sleep(args.poll)
        if outcome != "running":
            waiting = None
        progress.update(task, description=f"Job {name}: {outcome}")
    last = _job_log(cluster, name)
    if out.json_mode:
        out.json(
            {
                "job": name,
                "namespace": cluster.namespace,
                "outcome": outcome,
                "waiting": waiting,
                "log": last,
            }
        )
    elif waiting:
        out.print(f"Job {name} not started after {args.wait:g} s: {waiting}")
    else:
        out.print(f"Job {name} {outcome}" + (f": {last.splitlines()[-1]}" if last else ""))
    return 0 if outcome == "succeeded" else 1


WAITING_TO_START = {"ContainerCreating", "PodInitializing"}
"""Waiting reasons of a container that is on its way: not worth a word."""


def _job_waiting(cluster: Cluster, job_name: str) -> str | None:
    """Why the Job's pod has not started its container (`ImagePullBackOff: ...`), if so."""
    try:
        pods = cluster.core.list_namespaced_pod(
            cluster.namespace, label_selector=f"job-name={job_name}"
        ).items
    except Exception:
        return None  # the Job's own status is still followed
    for pod in pods:
        for container in (pod.status and pod.status.container_statuses) or []:
            held = container.state and container.state.waiting
            if held and held.reason not in WAITING_TO_START:
                return f"{held.reason}: {held.message}" if held.message else str(held.reason)
    return None


def _running_image(cluster: Cluster) -> str:
    """The image the timeline Deployment runs, so that the Job runs the same release (not
    the manifests' bare `c360`, which no registry serves)."""
    found = _api(
        f"cannot read the image of the {registry.TIMELINE} Deployment in {cluster.namespace}"
        " (name one with --image)",
        cluster.apps.read_namespaced_deployment,
        registry.TIMELINE,
        cluster.namespace,
    )
    image: str = found.spec.template.spec.containers[0].image
    return image


def _job_log(cluster: Cluster, job_name: str) -> str:
    try:
        pods = cluster.core.list_namespaced_pod(
            cluster.namespace, label_selector=f"job-name={job_name}"
        ).items
    except Exception:
        return ""  # its outcome is known; the log is a detail
    for pod in pods:
        try:
            text: str = cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace)
        except Exception:  # noqa: S112 — the next pod may have it
            continue
        return text.strip()
    return ""


# -- logs, rollout-restart -----------------------------------------------------------------


def _logs(args: argparse.Namespace) -> int:
    names = deployments_of(args.service)
    cluster = connect(args)
    pods = []
    for deployment in names:
        selector = f"app.kubernetes.io/name={deployment},{PART_OF}"
        found = _api(
            f"cannot list the pods of {deployment} in {cluster.namespace}",
            cluster.core.list_namespaced_pod,
            cluster.namespace,
            label_selector=selector,
        )
        pods += found.items
    if not pods:
        raise CliError(f"no pods of {' or '.join(names)} in {cluster.namespace}")
    out = Output(args.json)
    logs: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        name = pod.metadata.name
        try:
            text = cluster.core.read_namespaced_pod_log(
                name,
                cluster.namespace,
                tail_lines=args.tail,
                container="service",
                previous=args.previous,
            )
        except Exception as exc:
            # A pod still starting (or pulling its image) has no log yet: the others' logs
            # are what the operator needs then.
            errors[name] = _api_error(exc, f"cannot read the log of {name}").message
            continue
        logs[name] = str(text).splitlines()
    if out.json_mode:
        out.json({"service": args.service, "pods": logs, "errors": errors})
    else:
        for name, lines in logs.items():
            for line in lines:
                print(f"{name} | {line}")
        for error in errors.values():
            out.note(error)
    return 1 if errors else 0


def _rollout_restart(args: argparse.Namespace) -> int:
    if args.all == bool(args.services):
        raise CliError("name the services to restart, or --all (not both)", EXIT_BAD_INPUT)
    names = list(registry.services()) if args.all else args.services
    deployments = [d for name in names for d in deployments_of(name)]
    cluster = connect(args)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    patch = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}
        }
    }
    out = Output(args.json)
    restarted: list[str] = []
    missing: dict[str, str] = {}
    for deployment in deployments:
        try:
            cluster.apps.patch_namespaced_deployment(deployment, cluster.namespace, patch)
        except Exception as exc:
            error = _api_error(exc, f"cannot restart {deployment}")
            if getattr(exc, "status", None) != 404:
                # A refusal or an API server gone: the same for the rest. Say what restarts.
                done = f" ({', '.join(restarted)} restarting)" if restarted else ""
                raise CliError(error.message + done) from None
            missing[deployment] = error.message  # one Deployment absent: restart the others
            continue
        restarted.append(deployment)
        if not out.json_mode:
            out.print(
                f"deployment {deployment} in {cluster.namespace} restarting (restartedAt {now})"
            )
    if out.json_mode:
        out.json(
            {
                "deployments": restarted,
                "missing": missing,
                "namespace": cluster.namespace,
                "restarted_at": now,
            }
        )
    else:
        for message in missing.values():
            out.note(message)
    return 1 if missing else 0


# -- prepare, secrets ------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> int:
    """Each service's PostgreSQL schemas and the JetStream streams, before the services start
    (their tables are made by the first process, once, under the schema's lock)."""
    from c360_platform import natsauth, pgroles
    from c360_platform.config import DEFAULT_NATS_URL, DEFAULT_POSTGRES_URL
    from c360_platform.pgstore import ensure_schema

    postgres_url = os.environ.get("C360_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    nats_url = os.environ.get("NATS_URL", DEFAULT_NATS_URL)
    out = Output(args.json)
    deadline = time.monotonic() + args.wait
    schemas = [schema for spec in registry.services().values() for schema in spec.schemas]
    for schema in schemas:
        _until_ready(
            "PostgreSQL", functools.partial(ensure_schema, postgres_url, schema), deadline, args
        )
    # Each service's role (CloudNativePG's managed roles make them) gets its schemas, and
    # what an earlier release made in them as the owner; waits until the roles exist.
    database = pgroles.database_of(postgres_url)
    owned = {
        pgroles.role_name(database, spec.schemas[0]): spec.schemas
        for spec in registry.services().values()
    }
    timeline = registry.service(registry.TIMELINE).schemas[0]
    _until_ready(
        "the services' PostgreSQL roles",
        functools.partial(pgroles.hand_over, postgres_url, owned, [timeline]),
        deadline,
        args,
    )
    streams = _until_ready(
        "NATS JetStream",
        lambda: asyncio.run(natsauth.prepare_streams(nats_url)),
        deadline,
        args,
    )
    if out.json_mode:
        out.json({"schemas": schemas, "roles": list(owned), "streams": streams})
    else:
        out.print(
            f"schemas: {', '.join(schemas)}; owned by the roles: {', '.join(owned)};"
            f" streams: {', '.join(streams)}"
        )
    return 0


def _until_ready(what: str, step: Callable[[], T], deadline: float, args: Any) -> T:
    """`step`, again every few seconds until it succeeds or `deadline` (monotonic) passes:
    on a new install the prepare Job starts while PostgreSQL and NATS are still starting
    (images pulled, volumes bound, a primary or a JetStream leader elected), and a Job that
    failed its few attempts by then leaves the streams to no one."""
    while True:
        try:
            return step()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
            if time.monotonic() >= deadline:
                raise CliError(
                    f"{what} not ready after {args.wait:g} s (--wait): {reason}"
                ) from None
            print(f"waiting for {what}: {reason}", file=sys.stderr, flush=True)
            time.sleep(args.poll)


def tls_manifests(
    namespace: str, services: Iterable[str], domain: str = "cluster.local"
) -> list[dict[str, Any]]:
    """A fresh certificate authority and, signed by it, a certificate per service naming its
    Service (in `namespace`, cluster domain `domain`) and one per client (TLS_CLIENTS)."""
    from c360_platform import certificates

    authority = certificates.Authority.create("c360 authority")
    ca = authority.cert_pem.decode()
    meta = {"app.kubernetes.io/part-of": "c360"}

    def secret(name: str, cert: bytes, key: bytes, with_ca: bool = True) -> dict[str, Any]:
        data = {"tls.crt": cert.decode(), "tls.key": key.decode()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": meta},
            "type": "kubernetes.io/tls",
            "stringData": {**data, **({"ca.crt": ca} if with_ca else {})},
        }

    made = [secret(TLS_AUTHORITY_SECRET, authority.cert_pem, authority.key_pem, False)]
    for name in services:
        names = certificates.service_names(name, namespace, domain)
        cert, key = authority.issue(f"c360 {name}", names)
        made.append(secret(tls_secret(name), cert, key))
    for client in TLS_CLIENTS:
        made.append(secret(tls_secret(client), *authority.issue(f"c360 {client}")))
    return made


def _opaque(name: str, data: dict[str, str], kind: str) -> dict[str, Any]:
    """A Secret of the token keys (`kind` signing-key, public-key) or of a holder's token
    (`token`), labelled so (c360.io/secret) that `kubectl apply -l` can apply them apart: the
    keys before the tokens (the move to the key pair), or the public key last (a new pair)."""
    labels = {"app.kubernetes.io/part-of": "c360", "c360.io/secret": kind}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "stringData": data,
    }


def auth_manifests(services: Iterable[str]) -> list[dict[str, Any]]:
    """A fresh signing key (the operator's Secret, which no pod mounts), its public key (every
    service's) and, signed with it, a token per service (role service, `service:NAME`) and
    one for the rebuild Job (role operator)."""
    from c360_platform import auth

    key = auth.SigningKey.generate()
    public = key.public_pem().decode()
    signing = _opaque(
        AUTH_SIGNING_SECRET,
        {"signing.pem": key.pem().decode(), "public.pem": public},
        "signing-key",
    )
    signing["metadata"]["annotations"] = {
        "c360.io/note": "the operator's: issues tokens (c360 token create --signing-key);"
        " mount it in no pod"
    }
    made = [signing, _opaque(AUTH_PUBLIC_SECRET, {"public.pem": public}, "public-key")]
    for name in services:
        token = key.issue(f"service:{name}", auth.Role.SERVICE)
        made.append(_opaque(token_secret(name), {"token": token}, "token"))
    job = key.issue(f"job:{REBUILD_TOKEN_HOLDER}", auth.Role.OPERATOR)
    made.append(_opaque(token_secret(REBUILD_TOKEN_HOLDER), {"token": job}, "token"))
    return made


def secrets_manifests(nats_url: str, roles: Iterable[str]) -> list[dict[str, Any]]:
    """The NATS server's authorization block and each role's URL, with fresh passwords."""
    from c360_platform import natsauth

    passwords = {role: secrets.token_urlsafe(24) for role in roles}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NATS_AUTH_SECRET, "labels": {"app.kubernetes.io/part-of": "c360"}},
            "type": "Opaque",
            "stringData": {"auth.conf": natsauth.authorization(passwords)},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NATS_SECRET, "labels": {"app.kubernetes.io/part-of": "c360"}},
            "type": "Opaque",
            "stringData": {
                role: natsauth.url_for(nats_url, role, password)
                for role, password in passwords.items()
            },
        },
    ]


def postgres_manifests(namespace: str) -> list[dict[str, Any]]:
    """A role per service with a fresh password (kubernetes.io/basic-auth, the shape
    CloudNativePG's managed roles read; labelled for it to apply a new password) and the URL
    the service connects with."""
    from c360_platform.credentials import url_for

    made = []
    for name in registry.services():
        role = postgres_role(name)
        password = secrets.token_urlsafe(24)
        base = f"postgresql://{PG_HOST}.{namespace}:5432/{PG_DATABASE}"
        made.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": postgres_secret(name),
                    "labels": {"app.kubernetes.io/part-of": "c360", "cnpg.io/reload": "true"},
                },
                "type": "kubernetes.io/basic-auth",
                "stringData": {
                    "username": role,
                    "password": password,
                    "uri": url_for(base, role, password),
                },
            }
        )
    return made


SECRET_KINDS = ("auth", "nats", "tls", "postgres", "key-wrap")
"""What `c360 ops secrets --only` can make alone: the token signing key, its public key and
the tokens it signs (which must change together); the NATS users (the server's and the
roles' Secrets, which must change together); the certificates; the services' PostgreSQL
roles' passwords; the KEK the data keys are wrapped under (only when asked for by name: a
new one replacing the one the keys are wrapped under would leave them unreadable, so it is
made once, with `kubectl create`, and replaced only keeping the old one, `--keep-keks`)."""
DEFAULT_KINDS = tuple(k for k in SECRET_KINDS if k != "key-wrap")


def _secrets(args: argparse.Namespace) -> int:
    from c360_platform import natsauth

    kinds = set(args.only or DEFAULT_KINDS)
    docs = []
    if "auth" in kinds:
        docs += auth_manifests(registry.services())
    if "nats" in kinds:
        docs += secrets_manifests(args.nats_url, natsauth.roles())
    if "postgres" in kinds:
        docs += postgres_manifests(args.namespace)
    if "tls" in kinds:
        docs += tls_manifests(args.namespace, registry.services(), args.cluster_domain)
    if "key-wrap" in kinds:
        docs += key_wrap_manifests(args.keep_keks)
    print("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs), end="")
    return 0


# -- the commands ----------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ops = subparsers.add_parser(
        "ops",
        help="operate c360 on Kubernetes (status, rebuild, logs, rollout-restart)",
        description="Operate c360 on Kubernetes through the API server.",
    )
    sub = ops.add_subparsers(title="commands", dest="ops_command", metavar="COMMAND")
    sub.required = True

    def cluster_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", metavar="NS", help="default: the context's, or c360")
        p.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
        p.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config")

    p = sub.add_parser(
        "status",
        help="replicas, lock holders, lags and dead letters per Deployment",
        description="Per Deployment: ready/desired replicas, which pod holds each relay and the"
        " projector lock, relay and projector lag and dead letters from the pods' metrics."
        " Exits 1 when something is red.",
    )
    cluster_options(p)
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "rebuild",
        help="run the timeline rebuild Job and follow it",
        description="Create a Job running `c360 timeline rebuild` and wait for its end.",
    )
    cluster_options(p)
    p.add_argument("--image", metavar="IMAGE", help="default: the timeline Deployment's image")
    p.add_argument("--wait", type=float, default=3600.0, metavar="SECONDS", help="give up after")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(func=_rebuild)

    p = sub.add_parser(
        "logs",
        help="a service's pod logs (its API and relay pods)",
        description="Print the logs of a service's pods: its API pods and, if it publishes"
        " events, its relay's (NAME-relay); name NAME-relay for the relay's alone.",
    )
    cluster_options(p)
    p.add_argument("service", metavar="SERVICE", help="a registered service, or SERVICE-relay")
    p.add_argument("--tail", type=int, default=200, metavar="N", help="last N lines of each pod")
    p.add_argument(
        "-p",
        "--previous",
        action="store_true",
        help="the log of each pod's previous container (the one that crashed)",
    )
    p.set_defaults(func=_logs)

    p = sub.add_parser(
        "rollout-restart",
        help="restart services' pods (rolling), their relays' too",
        description="Restart the pods of each service named, one by one as `kubectl rollout"
        " restart` does: its API Deployment and, if it publishes events, its relay's"
        " (NAME-relay), so that all of them read Secrets anew. NAME-relay restarts the relay"
        " alone.",
    )
    cluster_options(p)
    p.add_argument(
        "services", nargs="*", metavar="SERVICE", help="a registered service, or SERVICE-relay"
    )
    p.add_argument("--all", action="store_true", help="every registered service")
    p.set_defaults(func=_rollout_restart)

    p = sub.add_parser(
        "prepare",
        help="create schemas and streams (run by the prepare Job)",
        description="Create each service's PostgreSQL schema and the JetStream streams, from"
        " C360_POSTGRES_URL and NATS_URL, waiting for both to answer.",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long PostgreSQL and NATS may take to answer (default 900)",
    )
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "secrets",
        help="print the deployment's Secrets: tokens, NATS users, certificates",
        description=f"Print Secrets with fresh values: a token signing key ({AUTH_SIGNING_SECRET},"
        f" the operator's, mounted by no pod), its public key ({AUTH_PUBLIC_SECRET}, every"
        f" service's) and a token per service ({token_secret('NAME')}) and for the rebuild"
        f" Job ({token_secret(REBUILD_TOKEN_HOLDER)}), the NATS"
        f" server's authorization block ({NATS_AUTH_SECRET}) and each role's URL ({NATS_SECRET}),"
        f" a certificate authority ({TLS_AUTHORITY_SECRET}) and, signed by it, a certificate"
        f" per service naming its Service and one per client ({tls_secret('operator')},"
        f" {tls_secret('integration')}), and each service's PostgreSQL role and URL"
        f" ({postgres_secret('NAME')}).",
    )
    p.add_argument(
        "--nats-url", default="nats://nats:4222", metavar="URL", help="the NATS Service's URL"
    )
    p.add_argument(
        "-n",
        "--namespace",
        default=NAMESPACE,
        metavar="NS",
        help=f"the namespace the certificates name the Services in (default {NAMESPACE})",
    )
    p.add_argument(
        "--cluster-domain",
        default="cluster.local",
        metavar="DOMAIN",
        help="the cluster's DNS domain (default cluster.local)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=SECRET_KINDS,
        help="only these (repeatable), to rotate one without the others: auth (the token"
        " signing key, its public key and the tokens), nats (the NATS users' passwords),"
        " tls (authority and certificates), postgres (the services' PostgreSQL roles),"
        f" key-wrap (the KEK the data keys are wrapped under, {KEY_WRAP_SECRET}: never"
        " made unless named, see --keep-keks); default: all but key-wrap",
    )
    p.add_argument(
        "--keep-keks",
        default="",
        metavar="KEKS",
        help="with --only key-wrap: the KEKs the keys are wrapped under now (the `keks` of"
        f" {KEY_WRAP_SECRET}), kept after the new one so that the services can open and wrap"
        " again what they wrapped",
    )
    p.set_defaults(func=_secrets)
