"""Entry point of the service-desk service process: gRPC API plus its outbox relay."""

from __future__ import annotations

from c360_platform import rpc
from c360_platform.config import Settings
from c360_service_desk.service import DEFAULT_PORT, SOURCE, build


async def main() -> rpc.ServiceHost:
    host, _, _ = build(Settings.from_env(SOURCE, DEFAULT_PORT))
    return host


if __name__ == "__main__":
    rpc.run(main)
