"""Certificates for the injector's TLS ports: a private CA and a serving certificate it signs.

Pure: bytes in, bytes out, no files and no cluster. The API server and the init containers
trust the CA (the webhook's caBundle, the broker CA), the injector serves the leaf.
`injector.operations.authority` decides when each is made; the CA outlives many serving
certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=730)
RENEW_BEFORE = datetime.timedelta(days=30)
"""A stored certificate with less than this left is replaced rather than reused."""
BACKDATE = datetime.timedelta(minutes=5)  # tolerate clock skew between nodes


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its unencrypted PEM private key."""

    cert_pem: bytes
    key_pem: bytes


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every name the API server or a pod may use to reach a Service."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


def generate_ca(common_name: str = "sakura-secrets-injector-ca") -> KeyPair:
    """A self-signed CA that may sign only leaf certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert_pem(cert), _key_pem(key))


def issue_serving_cert(
    ca: KeyPair, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
) -> KeyPair:
    """A TLS server certificate for the given names, signed by `ca`."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key made by generate_ca()")
    try:
        ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
    except ValueError as error:
        raise ValueError(f"bad IP address for the serving certificate: {error}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    common_name = dns_names[0] if dns_names else str(ips[0])
    now = _now()
    not_after = min(now + SERVING_VALIDITY, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert_pem(cert), _key_pem(key))


def reissue_reason(
    ca_bundle_pem: bytes,
    serving: KeyPair,
    dns_names: Sequence[str],
    *,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    now: datetime.datetime | None = None,
) -> str | None:
    """Why stored TLS material cannot be reused (None when it can).

    Reusable means: the key belongs to the certificate, a CA in the bundle signed it, it
    names every DNS name, and it stays valid for longer than `renew_before`.
    """
    moment = now or _now()
    try:
        leaf = x509.load_pem_x509_certificate(serving.cert_pem)
        key = serialization.load_pem_private_key(serving.key_pem, password=None)
        cas = x509.load_pem_x509_certificates(ca_bundle_pem)
    except ValueError as error:
        return f"stored certificate, key or CA does not parse ({error})"
    if key.public_key() != leaf.public_key():
        return "stored key does not belong to the stored certificate"
    if not any(signed_by(leaf, ca) for ca in cas):
        return "stored certificate is not signed by the stored CA"
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "stored certificate has no subjectAltName"
    missing = sorted(set(dns_names) - set(names.get_values_for_type(x509.DNSName)))
    if missing:
        return f"stored certificate does not name {', '.join(missing)}"
    if leaf.not_valid_before_utc > moment:
        return "stored certificate is not valid yet"
    if leaf.not_valid_after_utc - moment <= renew_before:
        return f"stored certificate expires {leaf.not_valid_after_utc:%Y-%m-%d}"
    return None


def not_after(cert_pem: bytes) -> datetime.datetime:
    """When the first certificate in `cert_pem` expires (UTC)."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def unexpired_certs(bundle_pem: bytes, *, now: datetime.datetime | None = None) -> bytes:
    """The certificates of a PEM bundle that are still valid, re-encoded, in order."""
    moment = now or _now()
    try:
        certs = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError:
        return b""
    return b"".join(cert_pem(c) for c in certs if c.not_valid_after_utc > moment)


def signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca`'s key signed `leaf` (no other check)."""
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
