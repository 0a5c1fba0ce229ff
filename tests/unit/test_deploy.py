"""deploy/: generated from the service registry, and every workload hardened in both overlays."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from c360_platform import registry
from tools import deploy_check, render_deploy

WORKLOADS = {"Deployment", "StatefulSet", "Job"}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(deploy_check.render(deploy_check.DEPLOY / "overlays" / overlay))


def overlays() -> list[str]:
    return [p.name for p in deploy_check.OVERLAYS]


def workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOADS]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector with matchLabels only (the only form deploy/ uses), non-empty."""
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def test_the_generated_manifests_are_up_to_date() -> None:
    assert render_deploy.stale(render_deploy.rendered()) == [], "run `make deploy`"


def test_both_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(overlays())


@pytest.mark.parametrize("overlay", overlays())
def test_every_registered_service_has_its_deployment(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert set(registry.services()) <= deployments
    for spec in registry.services().values():
        for kind in ("Service", "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert any(o["kind"] == kind and o["metadata"]["name"] == spec.name for o in objects), (
                f"{overlay}: no {kind} for {spec.name}"
            )


@pytest.mark.parametrize("overlay", overlays())
def test_every_container_is_hardened(overlay: str) -> None:
    found = workloads(rendered(overlay))
    found += [o for o in deploy_check.templates() if o["kind"] in WORKLOADS]
    assert found
    for workload in found:
        name = deploy_check.name_of(workload)
        pod = workload["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container.get("securityContext", {})
            non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            assert non_root is True, f"{name}: {container['name']} may run as root"
            assert security.get("runAsUser", pod_security.get("runAsUser", 0)) != 0, name
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("privileged", False) is False, name
            assert security.get("readOnlyRootFilesystem") is True, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not security.get("capabilities", {}).get("add"), name
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(limits), f"{name}: limits missing"
            assert {"cpu", "memory"} <= set(requests), f"{name}: requests missing"
            if workload["kind"] != "Job":
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in container, f"{name}: no {probe}"


@pytest.mark.parametrize("overlay", overlays())
def test_the_namespace_refuses_privileged_pods_and_reports_unrestricted_ones(overlay: str) -> None:
    """The c360-operator Role may create Jobs: without Pod Security Admission on the
    namespace, such a Job could run a privileged pod (hostPath, hostPID) and own its node."""
    objects = rendered(overlay)
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    used = {o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]}
    assert [n["metadata"]["name"] for n in namespaces] == sorted(used)
    labels = namespaces[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] in {"baseline", "restricted"}
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


@pytest.mark.parametrize("overlay", overlays())
def test_every_service_honours_the_revoked_holders_of_the_token_secret(overlay: str) -> None:
    """`c360 token revoke` on a cluster: the key `revoked` of c360-auth, mounted (optional)
    where C360_REVOKED_TOKENS_FILE points, so a leaked token is refused without a new secret."""
    services = [
        w
        for w in workloads(rendered(overlay))
        if w["kind"] == "Deployment"
        and pod_labels(w).get("app.kubernetes.io/component") == "service"
    ]
    assert len(services) == len(registry.services())
    for workload in services:
        pod = workload["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        path = env["C360_REVOKED_TOKENS_FILE"]
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"]))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "c360-auth"
        assert volume["secret"]["optional"] is True
        assert volume["secret"]["items"] == [{"key": "revoked", "path": path.rsplit("/", 1)[1]}]


def secret_refs(pod: dict[str, Any]) -> list[tuple[str, str | None, bool, str]]:
    """Every Secret a pod reads: (Secret, key or None for all, optional, where), from its
    containers' env and envFrom and its volumes (projected ones too)."""
    found: list[tuple[str, str | None, bool, str]] = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found.append((ref["name"], ref["key"], bool(ref.get("optional")), env["name"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                ref = source["secretRef"]
                found.append((ref["name"], None, bool(ref.get("optional")), "envFrom"))
    for volume in pod.get("volumes", []):
        secrets = [volume["secret"]] if "secret" in volume else []
        secrets += [
            s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s
        ]
        for secret in secrets:
            name = secret.get("secretName") or secret["name"]
            found.append((name, None, bool(secret.get("optional")), volume["name"]))
    return found


@pytest.mark.parametrize("overlay", overlays())
def test_no_pod_holds_the_token_signing_key_and_each_service_its_own_token(overlay: str) -> None:
    """The signing key (c360-auth-signing) is the operator's: no Deployment, StatefulSet or Job
    reads it. Each service's pods (API and relay) check tokens with the public key and call
    with their own token; the old shared secret is read only as the optional key of c360-auth
    (a deployment moving to the key pair; a new one has no such key), and only by c360's own
    pods."""
    from c360_cli import ops

    every = [*workloads(rendered(overlay)), *deploy_check.templates()]
    checked = set()
    for workload in every:
        name = workload["metadata"]["name"]
        refs = secret_refs(workload["spec"]["template"]["spec"])
        assert not [r for r in refs if r[0] == ops.AUTH_SIGNING_SECRET], name
        for secret, key, optional, _ in refs:
            if secret == ops.AUTH_SECRET:
                assert key in ("secret", "revoked", None), name
                assert optional, (name, key)
        by_variable = {where: (secret, key, optional) for secret, key, optional, where in refs}
        service = name.removesuffix("-relay")
        if workload["kind"] != "Deployment" or service not in registry.services():
            continue
        assert by_variable["C360_AUTH_PUBLIC_KEY"] == (ops.AUTH_PUBLIC_SECRET, "public.pem", False)
        assert by_variable["C360_TOKEN"][:2] == (f"c360-token-{service}", "token"), name
        checked.add(name)
    assert set(registry.services()) <= checked
    (rebuild,) = [o for o in deploy_check.templates() if o["kind"] == "Job"]
    job = {w: (s, k) for s, k, _, w in secret_refs(rebuild["spec"]["template"]["spec"])}
    assert job["C360_TOKEN"] == ("c360-token-timeline-rebuild", "token")


@pytest.mark.parametrize("overlay", overlays())
def test_every_process_that_opens_a_store_has_the_kek_and_nothing_else_does(overlay: str) -> None:
    """The data keys are wrapped under the KEKs of c360-key-wrap (keywrap): every pod that
    opens a store (each service's API and relay, the prepare Job) reads them, optionally (a
    deployment made before keeps its keys as they are until the Secret exists); the rebuild
    Job, which only calls the timeline's API, and the NATS and PostgreSQL pods do not."""
    from c360_cli import ops

    readers = set()
    for workload in [*workloads(rendered(overlay)), *deploy_check.templates()]:
        refs = secret_refs(workload["spec"]["template"]["spec"])
        kek = [r for r in refs if r[0] == ops.KEY_WRAP_SECRET]
        if kek:
            assert kek == [(ops.KEY_WRAP_SECRET, "keks", True, "C360_KEY_WRAP_KEY")]
            readers.add(workload["metadata"]["name"])
    relays = {f"{n}-relay" for n, s in registry.services().items() if s.publishes_events}
    assert readers == {*registry.services(), *relays, "c360-prepare"}


@pytest.mark.parametrize("overlay", overlays())
def test_each_service_logs_in_to_postgresql_as_a_role_of_its_own(overlay: str) -> None:
    """Each service's pods (API and relay) read the URL of their own role (c360-pg-NAME), the
    one the Cluster's managed roles give that Secret's password; only the prepare Job reads
    the application owner's (c360-pg-app), which is a member of every service's role."""
    from c360_cli import ops

    objects = rendered(overlay)
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    owner = roles.pop(ops.PG_ADMIN_ROLE)
    assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == ops.PG_ADMIN_ROLE
    assert sorted(owner["inRoles"]) == sorted(roles)
    for role in roles.values():
        assert role["login"] is True
        for power in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert role[power] is False, (role["name"], power)
    checked = set()
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        refs = secret_refs(workload["spec"]["template"]["spec"])
        postgres = [(s, k) for s, k, _, w in refs if w == "C360_POSTGRES_URL"]
        if name == "c360-prepare":
            assert postgres == [(ops.POSTGRES_SECRET, "uri")]
            continue
        assert ops.POSTGRES_SECRET not in [s for s, *_ in refs], name
        service = name.removesuffix("-relay")
        if workload["kind"] != "Deployment" or service not in registry.services():
            continue
        assert postgres == [(f"c360-pg-{service}", "uri")], name
        role = f"c360_{registry.service(service).schemas[0]}"
        assert roles[role]["passwordSecret"] == {"name": f"c360-pg-{service}"}, name
        checked.add(service)
    assert (
        checked
        == set(registry.services())
        == {n for n in registry.services() if f"c360_{registry.service(n).schemas[0]}" in roles}
    )


@pytest.mark.parametrize("overlay", overlays())
def test_services_use_native_grpc_probes_and_drain(overlay: str) -> None:
    for workload in workloads(rendered(overlay)):
        name = workload["metadata"]["name"]
        if workload["kind"] != "Deployment" or name not in registry.services():
            continue
        spec = registry.service(name)
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["c360-service", name]
        env = {e["name"]: e.get("value") for e in container["env"]}
        health = int(env["C360_HEALTH_PORT"])
        assert health != spec.default_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # The kubelet probes the plain health-only port: it has no client certificate.
            assert container[probe]["grpc"]["port"] == health
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        assert pod["terminationGracePeriodSeconds"] > 20
        assert pod["topologySpreadConstraints"]
        assert pod["serviceAccountName"] == name
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"


@pytest.mark.parametrize("overlay", overlays())
def test_every_workload_has_a_disruption_budget_and_a_network_policy(overlay: str) -> None:
    objects = rendered(overlay)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ), "no default deny-all policy"
    for workload in workloads(objects):
        if workload["kind"] == "Job":
            continue
        name = deploy_check.name_of(workload)
        labels = pod_labels(workload)
        assert any(selects(b["spec"]["selector"], labels) for b in budgets), f"{name}: no PDB"
        assert any(
            selects(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"]["policyTypes"]
            for p in policies
        ), f"{name}: no NetworkPolicy admitting its clients"


def admits(
    policy: dict[str, Any], port: int, labels: dict[str, str], namespace: dict[str, str] | None
) -> bool:
    """Whether `policy`'s ingress admits a pod with `labels` to `port`: a pod of the policy's
    own namespace (`namespace` None) or of another namespace with labels `namespace`."""

    def matches(selector: dict[str, Any] | None, found: dict[str, str]) -> bool:
        match = (selector or {}).get("matchLabels") or {}
        return all(found.get(k) == v for k, v in match.items())

    def peer(rule: dict[str, Any]) -> bool:
        if "ipBlock" in rule:
            return False
        if "namespaceSelector" in rule:
            return namespace is not None and (
                matches(rule["namespaceSelector"], namespace)
                and matches(rule.get("podSelector"), labels)
            )
        return namespace is None and matches(rule.get("podSelector"), labels)

    return any(
        any(p["port"] == port for p in rule.get("ports", []))
        and any(peer(r) for r in rule.get("from", []))
        for rule in policy["spec"].get("ingress", [])
    )


@pytest.mark.parametrize("overlay", overlays())
def test_labelled_integrations_reach_nats_and_nothing_else_outside_c360_does(
    overlay: str,
) -> None:
    """ERP and the delivery provider publish on NATS with users of their own: their pods,
    labelled c360.io/nats-client=true here or in a namespace labelled the same, reach port
    4222 through the network-policies component; unlabelled pods do not."""
    objects = rendered(overlay)
    (nats,) = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"]
    nats_pods = pod_labels(nats)
    policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"], nats_pods)
    ]
    assert policies
    client = {"c360.io/nats-client": "true", "app": "erp-bridge"}

    def reaches(labels: dict[str, str], namespace: dict[str, str] | None) -> bool:
        return any(admits(p, 4222, labels, namespace) for p in policies)

    assert reaches(client, None)
    assert reaches(client, {"c360.io/nats-client": "true"})
    assert not reaches(client, {})  # a namespace must be labelled too
    assert not reaches({"app": "erp-bridge"}, {"c360.io/nats-client": "true"})
    assert not reaches({"app": "erp-bridge"}, None)
    # Such a pod in c360's namespace (where everything is denied by default) may go out to NATS.
    assert any(
        o["kind"] == "NetworkPolicy"
        and selects(o["spec"]["podSelector"], client)
        and any(
            any(selects(to.get("podSelector", {}), nats_pods) for to in rule.get("to", []))
            and {"protocol": "TCP", "port": 4222} in rule.get("ports", [])
            for rule in o["spec"].get("egress", [])
        )
        for o in objects
    )


@pytest.mark.parametrize("overlay", overlays())
def test_a_labelled_api_client_reaches_every_service_from_c360s_namespace_too(
    overlay: str,
) -> None:
    """An API client's pod labelled c360.io/api-client=true is admitted on each service's
    gRPC port, and in c360's own namespace (everything denied by default) may also go out."""
    objects = rendered(overlay)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    client = {"c360.io/api-client": "true", "app": "crm-portal"}
    for spec in registry.services().values():
        service = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": "c360"}
        admitting = [p for p in policies if selects(p["spec"]["podSelector"], service)]
        assert any(admits(p, spec.default_port, client, None) for p in admitting), spec.name
        assert not any(admits(p, spec.default_port, {"app": "x"}, None) for p in admitting)
        assert any(
            selects(p["spec"]["podSelector"], client)
            and any(
                any(selects(to.get("podSelector", {}), service) for to in rule.get("to", []))
                for rule in p["spec"].get("egress", [])
            )
            for p in policies
        ), f"an API client in c360's namespace cannot go out to {spec.name}"


@pytest.mark.parametrize("overlay", overlays())
def test_a_labelled_scraper_reaches_every_c360_pods_metrics_by_selector(overlay: str) -> None:
    """Prometheus's pods, labelled c360.io/metrics-scraper=true in their own namespace, reach
    /metrics of every API and relay pod by a selector, as NATS's and PostgreSQL's monitoring
    ports: an ipBlock does not name pods where the CNI tells them by identity (Cilium)."""
    objects = rendered(overlay)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    scraper = {"c360.io/metrics-scraper": "true", "app.kubernetes.io/name": "prometheus"}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pods = pod_labels(deployment)
        admitting = [p for p in policies if selects(p["spec"]["podSelector"], pods)]
        name = deployment["metadata"]["name"]
        assert any(admits(p, 9090, scraper, {"name": "monitoring"}) for p in admitting), name
        assert not any(admits(p, 9090, {"app": "x"}, {"name": "monitoring"}) for p in admitting)


def test_dev_is_small_and_prod_is_replicated() -> None:
    def floors(overlay: str) -> dict[str, int]:
        """Each workload's least replica count: its autoscaler's minimum, else its own."""
        objects = rendered(overlay)
        found = {
            o["metadata"]["name"]: o["spec"].get("replicas", 1)
            for o in workloads(objects)
            if o["kind"] != "Job"
        }
        for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
            found[hpa["spec"]["scaleTargetRef"]["name"]] = hpa["spec"]["minReplicas"]
        return found

    assert set(floors("dev").values()) == {1}
    prod = floors("prod")
    assert all(prod[name] >= 2 for name in registry.services())
    assert prod["nats"] == 3
    (cluster,) = [o for o in rendered("prod") if o["kind"] == "Cluster"]
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["postgresql"]["synchronous"]["method"] == "any"


@pytest.mark.parametrize("overlay", overlays())
def test_postgresqls_shared_buffers_fit_its_memory_limit(overlay: str) -> None:
    """At most a quarter of the pod's memory limit: buffers once filled count against it,
    and the rest is for connections, sorts and the page cache."""
    (cluster,) = [o for o in rendered(overlay) if o["kind"] == "Cluster"]
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kB": 2**10, "MB": 2**20, "GB": 2**30}

    def size(text: str) -> int:
        number, unit = text[:-2], text[-2:]
        return int(number) * units[unit]

    limit = size(cluster["spec"]["resources"]["limits"]["memory"])
    buffers = size(cluster["spec"]["postgresql"]["parameters"]["shared_buffers"])
    assert buffers * 4 <= limit, f"{overlay}: shared_buffers {buffers} of a {limit} limit"


def test_every_service_is_scaled_by_its_autoscaler() -> None:
    for overlay in overlays():
        objects = rendered(overlay)
        targets = {
            o["spec"]["scaleTargetRef"]["name"]
            for o in objects
            if o["kind"] == "HorizontalPodAutoscaler"
        }
        assert set(registry.services()) <= targets
    prod = [o for o in rendered("prod") if o["kind"] == "Deployment"]
    assert all("replicas" not in o["spec"] for o in prod), "the HPA owns the count"


@pytest.mark.parametrize("overlay", overlays())
def test_every_grpc_port_serves_mutual_tls_with_the_services_own_certificate(
    overlay: str,
) -> None:
    """Each service's pods (API and relay) mount the Secret `c360 ops secrets` makes for it, and
    the rebuild Job the operator's; the certificate names the Service it is reached by."""
    from c360_cli import ops

    objects = rendered(overlay)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    checked = set()
    for spec in registry.services().values():
        for name in (spec.name, f"{spec.name}-relay"):
            found = [d for d in deployments if d["metadata"]["name"] == name]
            if not found:
                continue
            pod = found[0]["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert volumes["tls"]["secret"]["secretName"] == f"c360-tls-{spec.name}", name
            assert volumes["tls"]["secret"]["defaultMode"] & 0o007 == 0, name
            for variable, file in (
                ("C360_TLS_CA", "ca.crt"),
                ("C360_TLS_CERT", "tls.crt"),
                ("C360_TLS_KEY", "tls.key"),
            ):
                assert env[variable] == f"{mounts['tls']}/{file}", (name, variable)
            checked.add(name)
    assert set(registry.services()) <= checked
    (rebuild,) = [o for o in deploy_check.templates() if o["kind"] == "Job"]
    pod = rebuild["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["tls"]["secret"]["secretName"] == (
        ops.tls_secret("operator")
    )
    assert {e["name"] for e in pod["containers"][0]["env"]} >= {"C360_TLS_CERT", "C360_TLS_KEY"}


def test_no_secret_values_in_git() -> None:
    for overlay in overlays():
        assert not [o for o in rendered(overlay) if o["kind"] == "Secret"]


def test_a_service_added_to_the_registry_is_deployed_without_an_edit_under_deploy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    billing = registry.ServiceSpec(
        name="billing",
        package="c360_billing",
        default_port=50077,
        api="c360.billing.v1.BillingService",
        build="c360_billing.service:build",
    )
    specs = {**registry.services(), "billing": billing}
    monkeypatch.setattr(registry, "services", lambda: specs)
    files = render_deploy.rendered()
    base = render_deploy.DEPLOY / "base"
    assert "services/billing.yaml" in files[base / "kustomization.yaml"]
    assert "billing=billing:50077" in files[base / "settings.yaml"]
    objects = list(yaml.safe_load_all(files[base / "services" / "billing.yaml"]))
    kinds = {o["kind"] for o in objects}
    assert kinds == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    policies = render_deploy.DEPLOY / "components" / "network-policies"
    assert "services/billing.yaml" in files[policies / "kustomization.yaml"]
    assert render_deploy.stale(files) != []  # `make deploy` would write it


def _bytes(text: str) -> int:
    """A size as Kubernetes (1Gi, 10G) or NATS (9G: 10^9, 9GB: 2^30 each) writes it."""
    number = float(text.rstrip("KMGTkmgtiBb"))
    unit = text[len(text.rstrip("KMGTkmgtiBb")) :]
    if not unit:
        return int(number)
    power = "KMGT".index(unit[0].upper()) + 1
    binary = unit[1:].lower() in ("i", "b", "ib")
    return int(number * (2 ** (10 * power) if binary else 10 ** (3 * power)))


@pytest.mark.parametrize("overlay", overlays())
def test_jetstreams_store_fits_the_nats_volume(overlay: str) -> None:
    """JetStream refuses messages at max_file_store; a disk that fills first stops it on that
    server instead (and each server holds a replica of every stream)."""
    import re

    objects = rendered(overlay)
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("nats-config")
    ]
    text = "\n".join(config["data"].values())
    (limit,) = re.findall(r"^\s*max_file_store:\s*(\S+)\s*$", text, re.MULTILINE)
    (nats,) = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"]
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    volume = _bytes(claim["spec"]["resources"]["requests"]["storage"])
    assert _bytes(limit) <= 0.9 * volume, (
        f"{overlay}: max_file_store {limit} on a {volume} B volume"
    )


@pytest.mark.parametrize("overlay", overlays())
def test_the_event_stream_is_bounded_on_the_cluster(overlay: str) -> None:
    """Unbounded, the event stream fills JetStream's store (a fixed volume, which every
    server holds a replica of) and the relays then publish nothing; the services' stores keep
    every event, and a consumer away longer than the stream catches up from them."""
    from c360_platform.streams import StreamSettings

    (settings,) = [
        o
        for o in rendered(overlay)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "c360-settings"
    ]
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings["data"].items():
            env.setenv(name, value)
        events = StreamSettings.from_env().config()
    assert (events.max_age or 0) > 0 or (events.max_bytes or -1) > 0, overlay
    assert (events.max_age or 0) >= 7 * 24 * 3600  # a consumer away for a week is still served
    assert events.duplicate_window == 600  # the relays' re-publications are still caught
