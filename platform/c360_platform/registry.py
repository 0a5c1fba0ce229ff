"""Which services exist: each declares itself once (a `ServiceSpec` behind the package entry
point group `c360.services`); everything that needs the list of services asks here."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from c360_platform.config import Settings
    from c360_platform.contract import EventContract
    from c360_platform.rpc import ServiceHost

GROUP = "c360.services"
TIMELINE = "timeline"
"""The timeline's name: the one service every deployment has, which the others may read."""


@dataclass(frozen=True)
class Partner:
    """An outside system a service works with over NATS (a delivery provider): it reads the
    service's events and publishes only on subjects of its own, kept in a stream the
    service consumes. It gets a NATS user named `role`, as ERP does."""

    role: str
    """Its NATS user (`delivery`)."""
    stream: str
    """The JetStream stream of what it publishes (`DELIVERY`)."""
    subjects: tuple[str, ...]
    """The only subjects it may publish on (`delivery.>`)."""


@dataclass(frozen=True)
class Durable:
    """A durable JetStream consumer a service reads a stream with. Only that service's NATS
    user may create, read, acknowledge or delete it; integrators may not touch it."""

    stream: str
    """The stream it reads (`C360`, `ERP`, a partner's)."""
    name: str
    """Its name (`sales-renewals`): the service's modules take it from here."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service as the rest of c360 sees it: declared in its package's `spec` module and
    registered under the entry point group `c360.services` in its pyproject.toml."""

    name: str
    """Its name: process, NATS user, event source (`c360.<name>.>`), log file, CLI address."""
    package: str
    """Its Python package (`c360_customer`)."""
    default_port: int
    """Its gRPC port when nothing else is said (`c360 up --base-port` moves all of them)."""
    api: str
    """The full name of its gRPC service (`c360.customer.v1.CustomerService`)."""
    build: str
    """`module:function` that builds the service from `Settings`, returning a ServiceHost."""
    summary: str = ""
    """One line for `c360 services`."""
    contract: str = ""
    """`module:attribute` of its published contract (an `EventContract`), if it publishes."""
    publishes_events: bool = True
    """It keeps an event store whose events its relay publishes (`c360.<name>.>`) and whose
    catch-up read it serves; `c360 verify` reconciles it with the timeline."""
    reads_timeline: bool = False
    """It reads the customer's 360 context from the timeline over gRPC."""
    consumes: tuple[Durable, ...] = ()
    """The durable consumers it reads JetStream streams with, each declared here once."""
    dead_letters: bool = False
    """It stores messages it cannot take on the dead-letter stream."""
    partner: Partner | None = None
    """An outside system that reads its events and publishes back on subjects of its own
    (a durable on its stream belongs in `consumes`)."""
    domain: tuple[str, ...] = ("domain",)
    """Its modules that must do no I/O (relative to the package), checked by `make lint`."""
    more_stores: tuple[str, ...] = ()
    """The sources of stores it keeps besides its own (each a schema its role owns)."""

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams it reads, each once."""
        return tuple(dict.fromkeys(d.stream for d in self.consumes))

    @property
    def schemas(self) -> tuple[str, ...]:
        """The PostgreSQL schemas it owns: its own store's first."""
        return tuple(s.replace("-", "_") for s in (self.name, *self.more_stores))

    def builder(self) -> Callable[[Settings], ServiceHost]:
        """The build function, imported on first use."""
        module, _, attr = self.build.partition(":")
        function: Callable[[Settings], ServiceHost] = getattr(importlib.import_module(module), attr)
        return function

    def event_contract(self) -> EventContract:
        """Its published contract, imported on first use."""
        module, _, attr = self.contract.partition(":")
        found: EventContract = getattr(importlib.import_module(module), attr)
        return found

    def port(self, base: int | None = None) -> int:
        """Its port when the first service's port is moved to `base`."""
        return self.default_port if base is None else base + self.default_port - BASE_PORT


BASE_PORT = 50051
"""The lowest default port; `--base-port` moves every service by the same offset."""


class RegistryError(RuntimeError):
    """The installed services contradict each other (a name or a port twice)."""


def _load() -> dict[str, ServiceSpec]:
    specs: dict[str, ServiceSpec] = {}
    ports: dict[int, str] = {}
    for point in entry_points(group=GROUP):
        spec: Any = point.load()
        if not isinstance(spec, ServiceSpec):
            raise RegistryError(f"entry point {point.name} = {point.value} is not a ServiceSpec")
        if spec.name != point.name:
            raise RegistryError(f"entry point {point.name} names service {spec.name!r}")
        if spec.name in specs:
            raise RegistryError(f"two services are named {spec.name!r}")
        if spec.default_port in ports:
            raise RegistryError(
                f"{spec.name} and {ports[spec.default_port]} both default to port"
                f" {spec.default_port}"
            )
        specs[spec.name] = spec
        ports[spec.default_port] = spec.name
    return dict(sorted(specs.items(), key=lambda item: item[1].default_port))


@cache
def services() -> dict[str, ServiceSpec]:
    """Every installed service by name, in order of their default ports."""
    return _load()


def service(name: str) -> ServiceSpec:
    """One service by name; KeyError naming the installed ones if there is none."""
    found = services().get(name)
    if found is None:
        raise KeyError(f"no service {name!r}; installed: {', '.join(services())}")
    return found


def event_sources() -> Iterator[ServiceSpec]:
    """The services that publish events from a store of their own."""
    return (spec for spec in services().values() if spec.publishes_events)
