"""The import rules `make lint` checks cover every registered service."""

from __future__ import annotations

import configparser

from c360_platform import registry
from tools import import_rules


def test_the_rules_name_every_domain_module_and_forbid_the_drivers() -> None:
    config = configparser.ConfigParser()
    config.read_string(import_rules.contracts())
    domain = config["importlinter:contract:domain"]
    sources = domain["source_modules"].split()
    forbidden = domain["forbidden_modules"].split()
    for spec in registry.services().values():
        assert {f"{spec.package}.{m}" for m in spec.domain} <= set(sources)
    assert {"psycopg", "nats", "grpc", "c360_platform.pgstore", "c360_platform.rpc"} <= set(
        forbidden
    )
    assert not {f"c360_platform.{m}" for m in import_rules.PURE_PLATFORM} & set(forbidden)
    apart = config["importlinter:contract:apart"]["modules"].split()
    assert sorted(apart) == sorted(s.package for s in registry.services().values())
