"""The service's main module imports nothing heavy at module level: each process of the CPU
pool (spawned) imports it again, and should pay only for the work it is given."""

from __future__ import annotations

from .support import loaded_after


def test_the_main_module_of_a_service_imports_no_server_at_module_level() -> None:
    heavy = ["grpc", "nats", "opentelemetry.sdk", "c360_platform.rpc", "c360_timeline"]
    assert loaded_after("import c360_platform.serve", heavy) == []
