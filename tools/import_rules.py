"""`make lint`'s import rules, as import-linter contracts built from the service registry.

- Domain modules (each service's spec names them) import no grpc, nats, psycopg nor any of
  the platform's adapters: only its pure modules (errors, validation, vocabulary, ...).
- No service imports another; the timeline imports no service (it knows the contract only).
- The platform and the CLI import no service package.

Prints the contracts it checks with `--show`; exits non-zero when one is broken.
"""

from __future__ import annotations

import argparse
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

import c360_platform
from c360_platform import registry

PURE_PLATFORM = (
    "errors",
    "validation",
    "vocabulary",
    "envelope",
    "consistency",
    "subjects",
    "pii",
    "currencies",
)
"""Platform modules domain code may use: no I/O, no adapters."""
IO_PACKAGES = ("grpc", "grpc_health", "grpc_reflection", "nats", "psycopg", "psycopg_pool")


def _lines(title: str, items: list[str]) -> str:
    return title + "\n" + "".join(f"    {item}\n" for item in items)


def contracts() -> str:
    """The import-linter configuration (INI) for the installed services."""
    specs = list(registry.services().values())
    packages = [spec.package for spec in specs]
    adapters = [
        f"c360_platform.{m.name}"
        for m in pkgutil.iter_modules(c360_platform.__path__)
        if m.name not in PURE_PLATFORM
    ]
    domain = [f"{spec.package}.{module}" for spec in specs for module in spec.domain]
    text = "[importlinter]\n" + _lines("root_packages =", ["c360_platform", "c360_cli", *packages])
    text += "include_external_packages = True\n\n"
    text += "[importlinter:contract:domain]\nname = Domain code does no I/O\ntype = forbidden\n"
    text += _lines("source_modules =", domain)
    text += _lines("forbidden_modules =", [*IO_PACKAGES, *adapters]) + "\n"
    text += "[importlinter:contract:apart]\nname = No service imports another\n"
    text += "type = independence\n" + _lines("modules =", packages) + "\n"
    text += "[importlinter:contract:shared]\n"
    text += "name = The platform and the CLI import no service\ntype = forbidden\n"
    text += _lines("source_modules =", ["c360_platform", "c360_cli"])
    text += _lines("forbidden_modules =", packages)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print the contracts and exit")
    args = parser.parse_args(argv)
    config = contracts()
    if args.show:
        print(config)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "importlinter.ini"
        path.write_text(config)
        lint = Path(sys.executable).parent / "lint-imports"
        done = subprocess.run([str(lint), "--no-logo", "--no-cache", str(path)], check=False)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
