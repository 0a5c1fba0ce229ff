"""A deployment's certificate authority and the certificates it signs (ECDSA P-256): what
`c360 up` makes under HOME/tls and `c360 ops` makes for a cluster. Apart from `tls`, which
only reads the files, because the cryptography package costs a CLI command ~50 ms to import.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from c360_platform.tls import TlsFiles

CA_NAME = "c360 local authority"
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
VALID_DAYS = 825
RENEW_DAYS = 30
"""A certificate (or the authority) this close to its end is made again at the next start."""
IDENTITIES = ("service", "operator", "integration")
"""The certificates `c360 up` makes: one the services share (server and client), one for
people at the terminal (the CLI), one to hand to integrations (the ERP bridge)."""
SERVING = frozenset({"service"})
"""The identities whose certificates may serve; the others only call (client authentication
alone, no names): an integrator's certificate must not let it pose as a c360 service and
collect the bearer tokens of whoever connects."""


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


@dataclass(frozen=True)
class Authority:
    """A deployment's certificate authority (ECDSA P-256) and what it signs."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = CA_NAME) -> Authority:
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
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
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> Authority:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the authority's key is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue(
        self,
        common: str,
        dns_names: Iterable[str] = (),
        addresses: Iterable[str] = (),
        *,
        days: float = VALID_DAYS,
    ) -> tuple[bytes, bytes]:
        """A certificate (PEM) and its key (PEM) for `common`, naming `dns_names` and
        `addresses`: one that names a host may serve and call (server and client
        authentication); one that names none may only call (client authentication)."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if names:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def service_names(service: str, namespace: str, domain: str = "cluster.local") -> list[str]:
    """The names a Kubernetes Service is reached by, for its certificate."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
    ]


def _current(cert: x509.Certificate, now: datetime.datetime) -> bool:
    """Valid now and for more than RENEW_DAYS."""
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > datetime.timedelta(
        days=RENEW_DAYS
    )


def _fits(path: Path, authority: Authority, serves: bool, now: datetime.datetime) -> bool:
    """The certificate at `path` is the authority's, current, and serves only if it should."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(authority.certificate)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return _current(cert, now) and (ExtendedKeyUsageOID.SERVER_AUTH in usages) == serves


def local_authority(folder: Path, identities: Iterable[str] = IDENTITIES) -> dict[str, TlsFiles]:
    """The authority in `folder` and a certificate per identity, made where missing, ending
    within RENEW_DAYS, or not as an identity's should be (keys 0600, the folder 0700); a new
    authority, and new certificates from it, where the authority is missing or ending.
    Certificates of the identities in SERVING name localhost and the loopback addresses and
    may serve and call; the others may only call (client authentication)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, ca_key = folder / "ca.crt", folder / "ca.key"
    authority: Authority | None = None
    if ca_cert.exists() and ca_key.exists():
        authority = Authority.load(ca_cert.read_bytes(), ca_key.read_bytes())
        if not _current(authority.certificate, now):
            authority = None
    if authority is None:
        authority = Authority.create()
        _write(ca_key, authority.key_pem, private=True)
        _write(ca_cert, authority.cert_pem, private=False)
    made: dict[str, TlsFiles] = {}
    for identity in identities:
        files = TlsFiles(ca_cert, folder / f"{identity}.crt", folder / f"{identity}.key")
        serves = identity in SERVING
        if not (files.key.exists() and _fits(files.cert, authority, serves, now)):
            names = (SERVER_NAMES, SERVER_ADDRESSES) if serves else ((), ())
            cert_pem, key_pem = authority.issue(f"c360 {identity}", *names)
            _write(files.key, key_pem, private=True)
            _write(files.cert, cert_pem, private=False)
        made[identity] = files
    return made
