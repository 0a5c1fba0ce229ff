"""The service's main module imports nothing heavy at module level: each process of the CPU
pool (spawned) imports it again, and should pay only for the work it is given."""

from __future__ import annotations

import subprocess
import sys


def test_the_main_module_of_a_service_imports_no_server_at_module_level() -> None:
    probe = (
        "import sys\n"
        "import c360_platform.serve\n"
        "heavy = ['grpc', 'nats', 'opentelemetry.sdk', 'c360_platform.rpc', 'c360_timeline']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""
