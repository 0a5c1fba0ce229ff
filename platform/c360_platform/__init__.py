"""What every c360 service shares: store wiring, outbox relay, envelope, gRPC bootstrap, errors."""

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

# c360 forks children (embedded PostgreSQL and nats-server, service processes) from processes
# that run gRPC. gRPC's own fork handlers then run in each child between fork and exec, where
# they can break the child (seen: a nats-server that never started). No child of ours uses
# gRPC before exec, so the handlers are switched off; this must happen before gRPC starts.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


class _Deferred(types.ModuleType):
    """A module's stand-in in sys.modules until one of its attributes is read: then the module
    is imported (in the stand-in's place) and the attribute read from it. Unlike importlib's
    LazyLoader it survives `import name` (which reads `__spec__`) without loading."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)


def defer_import(name: str) -> None:
    """Make `import name` cheap where nothing of the module is used: it is imported on the
    first read of one of its attributes. For an optional dependency a library imports eagerly
    and c360 does not use. Nothing is done for a module imported already or not installed
    (the importer's own fallback applies)."""
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _Deferred(name)


# nats-py imports aiohttp, when installed (the `kubernetes` client of `c360 ops` brings it),
# for its WebSocket transport, which only a ws:// or wss:// NATS URL uses: ~0.4 s of CPU and
# ~10 MB in every process that imports nats (each service, its relay, the CLI's stream
# commands), paid at once by all of them when `c360 up` starts the stack.
defer_import("aiohttp")
# OpenTelemetry's SDK imports psutil (~0.1 s) for a process resource detector c360 does not use.
defer_import("psutil")
