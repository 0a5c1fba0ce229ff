"""Entry point of the customer service process: gRPC API plus its outbox relay."""

from __future__ import annotations

from c360_customer.service import DEFAULT_PORT, SOURCE, build
from c360_platform import rpc
from c360_platform.config import Settings


async def main() -> rpc.ServiceHost:
    host, _, _ = build(Settings.from_env(SOURCE, DEFAULT_PORT))
    return host


if __name__ == "__main__":
    rpc.run(main)
