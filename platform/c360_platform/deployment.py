"""One deployment of the registered services: where each listens and what it connects to.

`c360 up`, the bench and the test fixtures all start services from a `Deployment`, so a new
service in the registry is started, addressed and given its NATS user the same way by each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from c360_platform import auth, keywrap, registry
from c360_platform.config import Settings, format_services
from c360_platform.processes import free_port, port_is_free
from c360_platform.registry import ServiceSpec
from c360_platform.tls import TlsFiles


def pick_ports(
    specs: Iterable[ServiceSpec], base: int | None = None, *, fresh: bool = False
) -> dict[str, int]:
    """Each service's port: its default (moved to `base`) when free, else (or always, when
    `fresh`) one the OS picks."""
    ports: dict[str, int] = {}
    for spec in specs:
        port = 0 if fresh else spec.port(base)
        if not (0 < port < 65536 and port_is_free(port)) or port in ports.values():
            port = free_port()
            while port in ports.values():
                port = free_port()
        ports[spec.name] = port
    return ports


@dataclass(frozen=True)
class Deployment:
    """The registered services on one PostgreSQL server and one NATS server."""

    postgres_url: str
    nats_url: str
    """The NATS URL for roles without credentials of their own (`nats_url_for`)."""
    ports: Mapping[str, int]
    host: str = "127.0.0.1"
    nats_url_for: Callable[[str], str] | None = None
    postgres_url_for: Callable[[str], str] | None = None
    """The PostgreSQL URL (its own role) of a service, when each has one (`pgroles`)."""
    """The NATS URL (with credentials) of a role, when the server has users per role."""
    specs: Mapping[str, ServiceSpec] = field(default_factory=registry.services)
    signing_key: auth.SigningKey = field(default_factory=auth.SigningKey.generate)
    """The key the deployment's tokens are signed with (`auth`); a new one unless given. Only
    its public key and each service's own token reach the services (`environment`)."""
    auth_secret: str = ""
    """The old shared token secret, given to the services only to test the move to the key
    pair (auth.MOVE_ON): they accept tokens signed with it, too."""
    relay_apart: bool = False
    tls: TlsFiles | None = None
    """The services' certificate (and the authority's) when their ports use TLS."""
    revocations: Path | None = None
    """The file of revoked tokens' holders the ports honour (`auth.Revocations`)."""
    key_wrap: Path | None = None
    """The file of the KEKs the services wrap data keys under (`keywrap`), if any."""
    """Each event-publishing service's outbox relay runs as a process of its own
    (`c360-service NAME --relay`; C360_RELAY=process), as `c360 up` and the manifests run it."""

    def token(self, role: auth.Role, subject: str) -> str:
        """A token of this deployment for `subject` (an id, never a person's name)."""
        return self.signing_key.issue(subject, role)

    @classmethod
    def plan(
        cls,
        postgres_url: str,
        nats_url: str,
        *,
        base_port: int | None = None,
        fresh_ports: bool = False,
        nats_url_for: Callable[[str], str] | None = None,
        specs: Mapping[str, ServiceSpec] | None = None,
        signing_key: auth.SigningKey | None = None,
        auth_secret: str = "",
        postgres_url_for: Callable[[str], str] | None = None,
        relay_apart: bool = False,
        tls: TlsFiles | None = None,
        revocations: Path | None = None,
        key_wrap: Path | None = None,
    ) -> Deployment:
        """Every registered service (or `specs`) on ports chosen now: the defaults (moved to
        `base_port`) where free, or ports the OS picks for all of them (`fresh_ports`)."""
        chosen = dict(specs if specs is not None else registry.services())
        return cls(
            postgres_url,
            nats_url,
            pick_ports(chosen.values(), base_port, fresh=fresh_ports),
            nats_url_for=nats_url_for,
            postgres_url_for=postgres_url_for,
            specs=chosen,
            signing_key=signing_key or auth.SigningKey.generate(),
            auth_secret=auth_secret,
            relay_apart=relay_apart,
            tls=tls,
            revocations=revocations,
            key_wrap=key_wrap,
        )

    @property
    def addresses(self) -> dict[str, str]:
        return {name: f"{self.host}:{port}" for name, port in self.ports.items()}

    def nats_for(self, role: str) -> str:
        return self.nats_url_for(role) if self.nats_url_for else self.nats_url

    def settings(self, name: str) -> Settings:
        """The settings of one service of this deployment."""
        addresses = self.addresses
        return Settings(
            service=name,
            postgres_url=(
                self.postgres_url_for(name) if self.postgres_url_for else self.postgres_url
            ),
            nats_url=self.nats_for(name),
            grpc_host=self.host,
            grpc_port=self.ports[name],
            timeline_addr=addresses.get(registry.TIMELINE, ""),
            services=addresses,
            auth_public_key=self.signing_key.public_pem().decode(),
            auth_secret=self.auth_secret,
            token=self.token(auth.Role.SERVICE, f"service:{name}"),
        )

    def environment(self, name: str) -> dict[str, str]:
        """The environment a process of the service reads its settings from."""
        s = self.settings(name)
        return {
            "C360_SERVICE": s.service,
            "C360_POSTGRES_URL": s.postgres_url,
            "NATS_URL": s.nats_url,
            "C360_GRPC_HOST": s.grpc_host,
            "C360_GRPC_PORT": str(s.grpc_port),
            "C360_TIMELINE_ADDR": s.timeline_addr,
            "C360_SERVICES": format_services(s.services),
            # The public key and the service's own token: nothing that signs a token.
            "C360_AUTH_PUBLIC_KEY": s.auth_public_key,
            "C360_TOKEN": s.token,
            **({"C360_AUTH_SECRET": s.auth_secret} if s.auth_secret else {}),
            "C360_RELAY": "process" if self.relay_apart else "inline",
            **(self.tls.env() if self.tls else {}),
            **({auth.REVOCATIONS_ENV: str(self.revocations)} if self.revocations else {}),
            **({keywrap.ENV: str(self.key_wrap)} if self.key_wrap else {}),
        }

    def relays(self) -> list[str]:
        """The services whose relay runs as a process of its own (none unless relay_apart)."""
        if not self.relay_apart:
            return []
        return [name for name, spec in self.specs.items() if spec.publishes_events]
