"""The CA and serving certificates: what a TLS client and the reuse decision rely on."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from injector.operations.certs import (
    generate_ca,
    issue_serving_cert,
    reissue_reason,
    service_dns_names,
    unexpired_certs,
)

NAMES = service_dns_names("sakura-secrets-injector", "sakura-secrets")


def test_service_dns_names_cover_every_way_to_reach_the_service() -> None:
    assert NAMES == (
        "sakura-secrets-injector",
        "sakura-secrets-injector.sakura-secrets",
        "sakura-secrets-injector.sakura-secrets.svc",
        "sakura-secrets-injector.sakura-secrets.svc.cluster.local",
    )


def test_ca_may_sign_only_leaf_certificates() -> None:
    ca = x509.load_pem_x509_certificate(generate_ca("my-ca").cert_pem)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True and constraints.path_length == 0
    assert ca.subject == ca.issuer
    assert ca.subject.rfc4514_string() == "CN=my-ca"


def test_serving_certificate_is_a_server_leaf_for_the_names() -> None:
    ca = generate_ca()
    pair = issue_serving_cert(ca, NAMES, ["127.0.0.1"])
    leaf = x509.load_pem_x509_certificate(pair.cert_pem)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert datetime.timedelta(days=365) < lifetime < datetime.timedelta(days=800)
    assert b"PRIVATE KEY" in pair.key_pem and b"ENCRYPTED" not in pair.key_pem


def test_a_serving_certificate_needs_a_name_and_valid_addresses() -> None:
    ca = generate_ca()
    with pytest.raises(ValueError, match="at least one DNS name"):
        issue_serving_cert(ca, [])
    with pytest.raises(ValueError, match="bad IP address"):
        issue_serving_cert(ca, ["x"], ["300.1.1.1"])


def test_stored_material_is_reused_only_when_it_is_good() -> None:
    ca = generate_ca()
    pair = issue_serving_cert(ca, NAMES)
    other_ca = generate_ca("other")
    other = issue_serving_cert(ca, NAMES)

    assert reissue_reason(ca.cert_pem, pair, NAMES) is None
    assert reissue_reason(other_ca.cert_pem + ca.cert_pem, pair, NAMES) is None  # rotation
    assert "not signed" in (reissue_reason(other_ca.cert_pem, pair, NAMES) or "")
    mixed = type(pair)(pair.cert_pem, other.key_pem)
    assert "does not belong" in (reissue_reason(ca.cert_pem, mixed, NAMES) or "")
    missing = reissue_reason(ca.cert_pem, pair, [*NAMES, "new.example"])
    assert missing is not None and "new.example" in missing
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=720)
    assert "expires" in (reissue_reason(ca.cert_pem, pair, NAMES, now=later) or "")
    assert "does not parse" in (reissue_reason(b"", type(pair)(b"", b""), NAMES) or "")


def test_unexpired_certs_drops_expired_certificates() -> None:
    first, second = generate_ca("a"), generate_ca("b")
    bundle = first.cert_pem + second.cert_pem
    assert unexpired_certs(bundle) == bundle
    far = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5000)
    assert unexpired_certs(bundle, now=far) == b""
    assert unexpired_certs(b"garbage") == b""
