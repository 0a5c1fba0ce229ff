"""Configuration of a c360 process, read from the environment (twelve-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Settings:
    """Settings shared by every service process.

    C360_POSTGRES_URL  the PostgreSQL server (each service keeps its own schema in it)
    NATS_URL           the NATS server with JetStream
    C360_GRPC_HOST     the address to listen on (127.0.0.1; 0.0.0.0 in a cluster)
    C360_GRPC_PORT     the gRPC port
    C360_TIMELINE_ADDR host:port of the timeline query API, for services that read it
    """

    service: str
    postgres_url: str
    nats_url: str
    grpc_host: str
    grpc_port: int
    timeline_addr: str

    @classmethod
    def from_env(cls, service: str, default_port: int) -> Settings:
        return cls(
            service=service,
            postgres_url=os.environ.get("C360_POSTGRES_URL", DEFAULT_POSTGRES_URL),
            nats_url=os.environ.get("NATS_URL", DEFAULT_NATS_URL),
            grpc_host=os.environ.get("C360_GRPC_HOST", "127.0.0.1"),
            grpc_port=int(os.environ.get("C360_GRPC_PORT", str(default_port))),
            timeline_addr=os.environ.get("C360_TIMELINE_ADDR", "127.0.0.1:50052"),
        )
