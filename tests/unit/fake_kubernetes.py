"""A fake Kubernetes API server for the tests of `c360 ops`: the few endpoints the command uses
(deployments, pods, their logs and metrics through the pod proxy, jobs), answering from a state
the test sets, and recording what it was asked to change. Plain http.server, one thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Pod:
    name: str
    labels: dict[str, str]
    phase: str = "Running"
    metrics: str | None = None
    """The text its /metrics serves; None: the proxy answers 503."""
    log: str = ""
    previous_log: str | None = None
    """The log of its container before the last restart; None: it never restarted."""
    metrics_delay: float = 0.0
    """Seconds its /metrics takes to answer through the proxy (a pod too busy)."""
    waiting: dict[str, str] | None = None
    """Its container's waiting state ({"reason": ..., "message": ...}), if it has not started."""


@dataclass
class State:
    namespace: str = "c360"
    """The one namespace holding the objects below; others are empty."""
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_statuses: list[dict[str, int]] = field(default_factory=list)
    """What successive reads of a Job's status answer (the last one repeats)."""
    job_log: str = ""
    job_pod_waiting: dict[str, str] | None = None
    """The waiting state of the pods the Jobs it creates start (None: they start)."""
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    forbidden: set[tuple[str, str]] = field(default_factory=set)
    """What the caller's Role does not grant, as (verb, resource): ("list", "pods"),
    ("get", "pods/proxy"), ...; the server answers 403 with the API server's message."""

    def deployment(self, name: str, *, replicas: int, ready: int, image: str) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "c360"}
        self.deployments[name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "service", "image": image}]},
                },
            },
            "status": {"replicas": replicas, "readyReplicas": ready},
        }
        return labels

    def pod(self, name: str, labels: dict[str, str], **kw: Any) -> None:
        self.pods[name] = Pod(name, labels, **kw)


def _matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _pod_json(pod: Pod) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": pod.phase}
    if pod.waiting is not None:
        status["containerStatuses"] = [
            {
                "name": "service",
                "image": "c360",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": pod.waiting},
            }
        ]
    return {
        "metadata": {"name": pod.name, "labels": pod.labels},
        "spec": {"containers": [{"name": "service", "image": "c360"}]},
        "status": status,
    }


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting (a read timeout): as a real server, say nothing

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})

    def _bad_request(self, message: str) -> None:
        body = {"kind": "Status", "status": "Failure", "message": message, "code": 400}
        self._send(400, {**body, "reason": "BadRequest"})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        loaded: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
        return loaded

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlsplit(self.path)
        self.state.requests.append(f"{self.command} {url.path}")
        return [unquote(p) for p in url.path.strip("/").split("/")], parse_qs(url.query)

    def _refused(self, parts: list[str]) -> bool:
        """Answer 403 as the API server does if the caller may not do this (State.forbidden)."""
        if "namespaces" not in parts:
            return False
        at = parts.index("namespaces")
        namespace, rest = parts[at + 1], parts[at + 2 :]
        verb = {"GET": "get" if len(rest) > 1 else "list", "POST": "create", "PATCH": "patch"}
        resource = "/".join(rest[:1] + rest[2:3])
        if (verb[self.command], resource) not in self.state.forbidden:
            return False
        group = parts[1] if parts[0] == "apis" else ""
        message = (
            f'{rest[0]} is forbidden: User "tester" cannot {verb[self.command]} resource'
            f' "{resource}" in API group "{group}" in the namespace "{namespace}"'
        )
        self._send(
            403,
            {
                "kind": "Status",
                "status": "Failure",
                "message": message,
                "reason": "Forbidden",
                "code": 403,
            },
        )
        return True

    def do_GET(self) -> None:
        parts, query = self._route()
        if self._refused(parts):
            return
        selector = query.get("labelSelector", [""])[0]
        state = self.state
        if "namespaces" in parts:
            namespace = parts[parts.index("namespaces") + 1]
            if namespace != state.namespace:
                state = State(namespace=namespace)  # another namespace: nothing in it
        match parts:
            case ["apis", "apps", "v1", "namespaces", _, "deployments"]:
                items = [
                    d
                    for d in state.deployments.values()
                    if _matches(selector, d["metadata"]["labels"])
                ]
                self._send(200, {"kind": "DeploymentList", "items": items, "metadata": {}})
            case ["apis", "apps", "v1", "namespaces", _, "deployments", name]:
                found = state.deployments.get(name)
                self._send(200, found) if found else self._not_found()
            case ["api", "v1", "namespaces", _, "pods"]:
                items = [_pod_json(p) for p in state.pods.values() if _matches(selector, p.labels)]
                self._send(200, {"kind": "PodList", "items": items, "metadata": {}})
            case ["api", "v1", "namespaces", _, "pods", name, "log"]:
                pod = state.pods.get(name)
                if pod is None:
                    self._not_found()
                    return
                container = query.get("container", ["service"])[0]
                if pod.phase == "Pending":
                    self._bad_request(
                        f'container "{container}" in pod "{name}" is waiting to start:'
                        " ContainerCreating"
                    )
                    return
                log = pod.log
                if query.get("previous", ["false"])[0] == "true":
                    if pod.previous_log is None:
                        self._bad_request(
                            f'previous terminated container "{container}" in pod "{name}" not found'
                        )
                        return
                    log = pod.previous_log
                tail = int(query.get("tailLines", ["0"])[0] or 0)
                lines = log.splitlines()[-tail:] if tail else log.splitlines()
                self._send(200, "\n".join(lines) + "\n", "text/plain")
            case ["api", "v1", "namespaces", _, "pods", target, "proxy", "metrics"]:
                pod = state.pods.get(target.partition(":")[0])
                if pod is None or pod.metrics is None or not target.endswith(":9090"):
                    self._send(503, {"kind": "Status", "code": 503, "reason": "Unavailable"})
                    return
                time.sleep(pod.metrics_delay)
                self._send(200, pod.metrics, "text/plain; version=0.0.4")
            case ["apis", "batch", "v1", "namespaces", _, "jobs", name, "status"]:
                job = state.jobs.get(name)
                if job is None:
                    self._not_found()
                    return
                status = state.job_statuses.pop(0) if len(state.job_statuses) > 1 else {}
                status = status or (state.job_statuses[0] if state.job_statuses else {})
                self._send(200, {**job, "status": status})
            case _:
                self._not_found()

    def do_POST(self) -> None:
        parts, _ = self._route()
        if self._refused(parts):
            return
        match parts:
            case ["apis", "batch", "v1", "namespaces", _, "jobs"]:
                job = self._body()
                name = job["metadata"]["name"]
                self.state.jobs[name] = job
                self.state.pod(
                    f"{name}-x7k2p",
                    {"job-name": name},
                    log=self.state.job_log,
                    waiting=self.state.job_pod_waiting,
                    phase="Pending" if self.state.job_pod_waiting else "Running",
                )
                self._send(201, job)
            case _:
                self._not_found()

    def do_PATCH(self) -> None:
        parts, _ = self._route()
        if self._refused(parts):
            return
        match parts:
            case ["apis", "apps", "v1", "namespaces", _, "deployments", name]:
                found = self.state.deployments.get(name)
                if found is None:
                    self._not_found()
                    return
                self.state.patches.append((name, self._body()))
                self._send(200, found)
            case _:
                self._not_found()


@contextmanager
def serve(state: State, kubeconfig: Path, namespace: str) -> Iterator[str]:
    """Run the fake API server; write a kubeconfig for it whose context has `namespace`."""
    state.namespace = namespace
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    url = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
