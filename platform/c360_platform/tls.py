"""TLS with mutual authentication on every gRPC port: a deployment's own certificate authority,
a certificate for each kind of caller, and the credentials servers and channels use.

`c360 up` makes the authority and the certificates under HOME/tls (keys 0600) and hands the
services theirs through the environment (C360_TLS_CA, C360_TLS_CERT, C360_TLS_KEY); the CLI
and the examples take the operator's and the integration's from endpoints.json. A port with
TLS admits only callers holding a certificate of the deployment's authority, and every call
still needs a bearer token for its role (`auth`). Without those variables, ports and channels
are plain (the in-process test stacks; a cluster whose mesh does TLS).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "c360 local authority"
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
VALID_DAYS = 825
IDENTITIES = ("service", "operator", "integration")
"""The certificates `c360 up` makes: one the services share (server and client), one for
people at the terminal (the CLI), one to hand to integrations (the ERP bridge)."""


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


# -- a local authority --------------------------------------------------------------------------


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600 if private else 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def local_authority(folder: Path, identities: Iterable[str] = IDENTITIES) -> dict[str, TlsFiles]:
    """The authority in `folder` and a certificate per identity, made where missing (keys
    0600, the folder 0700). Certificates name localhost and the loopback addresses, and may
    serve and call (server and client authentication)."""
    ca_cert, ca_key = folder / "ca.crt", folder / "ca.key"
    now = datetime.datetime.now(datetime.UTC)
    if not (ca_cert.exists() and ca_key.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(CA_NAME))
            .issuer_name(_name(CA_NAME))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write(ca_key, _key_pem(key), private=True)
        _write(ca_cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    authority = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    made: dict[str, TlsFiles] = {}
    for identity in identities:
        files = TlsFiles(ca_cert, folder / f"{identity}.crt", folder / f"{identity}.key")
        if not (files.cert.exists() and files.key.exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
            cert = (
                x509.CertificateBuilder()
                .subject_name(_name(f"c360 {identity}"))
                .issuer_name(authority.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
                .sign(signer, hashes.SHA256())
            )
            _write(files.key, _key_pem(key), private=True)
            _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
        made[identity] = files
    return made
