"""Entry point of the timeline service process: projector plus query API."""

from __future__ import annotations

from c360_platform import rpc
from c360_platform.config import Settings
from c360_timeline.service import DEFAULT_PORT, SOURCE, build


async def main() -> rpc.ServiceHost:
    host, _ = build(Settings.from_env(SOURCE, DEFAULT_PORT))
    return host


if __name__ == "__main__":
    rpc.run(main)
