"""The local authority `c360 up` keeps: who may serve, and certificates made again before
they end."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from c360_platform import certificates


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_only_the_services_certificate_may_serve_the_callers_ones_only_call(
    tmp_path: Path,
) -> None:
    issued = certificates.local_authority(tmp_path)
    service = _load(issued["service"].cert)
    assert _usages(service) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = service.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    for identity in ("operator", "integration"):
        cert = _load(issued[identity].cert)
        assert _usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}, identity
        assert not [e for e in cert.extensions if isinstance(e.value, x509.SubjectAlternativeName)]
    assert oct(issued["integration"].key.stat().st_mode & 0o777) == "0o600"


def test_certificates_ending_soon_or_serving_where_they_should_not_are_made_again(
    tmp_path: Path,
) -> None:
    issued = certificates.local_authority(tmp_path)
    authority = certificates.Authority.load(
        (tmp_path / "ca.crt").read_bytes(), (tmp_path / "ca.key").read_bytes()
    )
    kept = issued["service"].cert.read_bytes()
    # One ending in ten days, and an integrator's certificate made before callers' ones
    # stopped serving (it names localhost).
    ending, ending_key = authority.issue("c360 operator", days=10)
    issued["operator"].cert.write_bytes(ending)
    issued["operator"].key.write_bytes(ending_key)
    legacy, legacy_key = authority.issue("c360 integration", ["localhost"], ["127.0.0.1"])
    issued["integration"].cert.write_bytes(legacy)
    issued["integration"].key.write_bytes(legacy_key)

    again = certificates.local_authority(tmp_path)
    assert again["service"].cert.read_bytes() == kept  # current and as it should be
    operator = _load(again["operator"].cert)
    left = operator.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(days=certificates.VALID_DAYS - 1)
    assert _usages(_load(again["integration"].cert)) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_an_authority_ending_soon_is_made_again_with_every_certificate(tmp_path: Path) -> None:
    certificates.local_authority(tmp_path)
    old = certificates.Authority.create()
    now = datetime.datetime.now(datetime.UTC)
    ending = (
        x509.CertificateBuilder()
        .subject_name(old.certificate.subject)
        .issuer_name(old.certificate.subject)
        .public_key(old.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=800))
        .not_valid_after(now + datetime.timedelta(days=5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(old.key, hashes.SHA256())
    )
    ending_authority = certificates.Authority(ending, old.key)
    (tmp_path / "ca.crt").write_bytes(ending_authority.cert_pem)
    (tmp_path / "ca.key").write_bytes(ending_authority.key_pem)
    for identity in certificates.IDENTITIES:
        names = ["localhost"] if identity in certificates.SERVING else []
        cert, key = ending_authority.issue(f"c360 {identity}", names)
        (tmp_path / f"{identity}.crt").write_bytes(cert)
        (tmp_path / f"{identity}.key").write_bytes(key)

    again = certificates.local_authority(tmp_path)
    ca = _load(tmp_path / "ca.crt")
    assert ca.not_valid_after_utc - now > datetime.timedelta(days=certificates.RENEW_DAYS)
    for identity in certificates.IDENTITIES:
        _load(again[identity].cert).verify_directly_issued_by(ca)  # made by the new one
