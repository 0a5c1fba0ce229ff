"""TLS with mutual authentication on every gRPC port: a deployment's own certificate authority,
a certificate for each kind of caller, and the credentials servers and channels use.
(`certificates` makes them; this module only reads them, so a CLI command does not import
the cryptography package.)

`c360 up` makes the authority and the certificates under HOME/tls (keys 0600) and hands the
services theirs through the environment (C360_TLS_CA, C360_TLS_CERT, C360_TLS_KEY); the CLI
and the examples take the operator's and the integration's from endpoints.json. A port with
TLS admits only callers holding a certificate of the deployment's authority, and every call
still needs a bearer token for its role (`auth`). Without those variables, ports and channels
are plain (the in-process test stacks; a cluster whose mesh does TLS).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TlsFiles:
    """The deployment's authority and one identity's certificate and key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TlsFiles | None:
        names = ("C360_TLS_CA", "C360_TLS_CERT", "C360_TLS_KEY")
        values = [env.get(n, "") for n in names]
        if not any(values):
            return None
        if not all(values):
            raise ValueError(f"set all of {', '.join(names)} or none")
        return cls(Path(values[0]), Path(values[1]), Path(values[2]))

    @classmethod
    def from_document(cls, doc: object) -> TlsFiles | None:
        """From endpoints.json's {"ca": …, "cert": …, "key": …}, if it has one."""
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), str) for k in ["ca", "cert", "key"]
        ):
            return None
        return cls(Path(doc["ca"]), Path(doc["cert"]), Path(doc["key"]))

    def document(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}

    def env(self) -> dict[str, str]:
        return {
            "C360_TLS_CA": str(self.ca),
            "C360_TLS_CERT": str(self.cert),
            "C360_TLS_KEY": str(self.key),
        }

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with this certificate; admit only clients with one of the authority's."""
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes(),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Trust the authority's servers only; show this certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


_chosen: list[TlsFiles | None] = []


def use(files: TlsFiles | None) -> None:
    """The certificate this process's channels show (the CLI's, from endpoints.json)."""
    _chosen[:] = [files]


def forget_choice() -> None:
    """Back to the environment's (a CLI command run inside another process: its tests)."""
    _chosen.clear()


def current() -> TlsFiles | None:
    """What channels use: what `use` chose, else the environment's (a service of
    `c360 up`), else none."""
    if not _chosen:
        return TlsFiles.from_env()
    return _chosen[0]


def served() -> TlsFiles | None:
    """What ports serve: the environment's only (a process that serves is a service)."""
    return TlsFiles.from_env()
