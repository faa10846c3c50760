"""doctor's TLS checks: the caBundle against the certificate the replicas present (else the
TLS Secret's), for the Service's name, and expiry; real certificates (operations.certs)."""

from __future__ import annotations

import datetime

from cryptography import x509

from injector.operations.certs import generate_ca, issue_serving_cert, service_dns_names
from injector.operations.doctor import tls
from injector.operations.doctor.facts import Presented
from injector.operations.doctor.results import Result, Status
from tests.support import doctor_facts as world

RESTART = (
    "kubectl -n sakura-secrets rollout restart deploy/sakura-secrets-certs (at start it stores "
    "the pair and patches the caBundle)"
)
CERTS = (
    "kubectl -n sakura-secrets exec deploy/sakura-secrets-certs -- sakura-secrets-injector certs"
)
LOGS = "kubectl -n sakura-secrets logs deploy/sakura-secrets-certs"


def test_the_bundle_verifies_what_the_replicas_present() -> None:
    assert tls.ca_bundle(world.healthy()) == Result(
        "ca-bundle",
        Status.PASS,
        "the caBundle verifies the certificate of 10.1.0.4:8443, 10.1.0.5:8443 for "
        "sakura-secrets-injector.sakura-secrets.svc",
    )


def test_a_bundle_of_another_ca_fails_with_the_restart() -> None:
    stranger = generate_ca("someone else")
    facts = world.healthy(webhook=world.webhook(stranger.cert_pem))
    result = tls.ca_bundle(facts)
    assert result == Result(
        "ca-bundle",
        Status.FAIL,
        "the caBundle does not verify the certificate of 10.1.0.4:8443 (the API server fails "
        "with x509: certificate signed by unknown authority); the caBundle does not verify the "
        "certificate of 10.1.0.5:8443 (the API server fails with x509: certificate signed by "
        "unknown authority)",
        RESTART,
    )


def test_a_bundle_holding_the_old_and_the_new_ca_verifies() -> None:
    stranger = generate_ca("retired")
    facts = world.healthy(webhook=world.webhook(stranger.cert_pem + world.pki()[0].cert_pem))
    assert tls.ca_bundle(facts).status == Status.PASS


def test_an_empty_bundle_fails() -> None:
    assert tls.ca_bundle(world.healthy(webhook=world.webhook(b""))) == Result(
        "ca-bundle",
        Status.FAIL,
        "the webhook's caBundle is empty or not PEM: the API server cannot verify the injector "
        "and refuses opted-in pods",
        RESTART,
    )


def test_a_certificate_for_another_name_fails_with_a_forced_renewal() -> None:
    ca = world.pki()[0]
    other = issue_serving_cert(ca, service_dns_names("old-name", "sakura-secrets"))
    facts = world.healthy(presented=(Presented("10.1.0.4:8443", world.der(other.cert_pem)),))
    assert tls.ca_bundle(facts) == Result(
        "ca-bundle",
        Status.FAIL,
        "the certificate of 10.1.0.4:8443 does not name sakura-secrets-injector.sakura-secrets.svc",
        f"{CERTS} --once --renew-before 99999",
    )


def test_without_a_reachable_replica_the_tls_secret_is_verified() -> None:
    unreachable = (Presented("10.1.0.4:8443", error="timed out"),)
    serving = world.pki()[1]
    facts = world.healthy(presented=unreachable, tls_certificate=serving.cert_pem.decode())
    assert tls.ca_bundle(facts).summary == (
        "the caBundle verifies the certificate of Secret sakura-secrets-injector-tls for "
        "sakura-secrets-injector.sakura-secrets.svc"
    )
    assert tls.ca_bundle(world.healthy(presented=unreachable)) == Result(
        "ca-bundle",
        Status.FAIL,
        "no certificate to verify: Secret sakura-secrets/sakura-secrets-injector-tls has no "
        "tls.crt and no replica answered (10.1.0.4:8443: timed out)",
        f"{LOGS}; {RESTART}",
    )


def test_expiry_passes_with_time_left() -> None:
    result = tls.certificate_expiry(world.healthy())
    assert result.status == Status.PASS
    assert result.summary.startswith("serving (10.1.0.4:8443) until ")
    assert "; CA until " in result.summary


def _at(days_before_serving_expiry: float) -> float:
    serving = world.pki()[1]
    after = x509.load_pem_x509_certificate(serving.cert_pem).not_valid_after_utc
    return (after - datetime.timedelta(days=days_before_serving_expiry)).timestamp()


def test_a_serving_certificate_near_expiry_warns_and_an_expired_one_fails() -> None:
    near = tls.certificate_expiry(world.healthy(now=_at(10.5)))
    assert near == Result(
        "certificate-expiry",
        Status.WARN,
        "the serving (10.1.0.4:8443) certificate expires in 10 days",
        f"{LOGS}; {CERTS} --once",
    )
    gone = tls.certificate_expiry(world.healthy(now=_at(-1)))
    assert gone.status == Status.FAIL
    assert gone.summary.startswith("the serving (10.1.0.4:8443) certificate expired on ")
    assert gone.fix == f"{LOGS}; {CERTS} --once"


def test_a_ca_near_expiry_warns_with_the_rotation() -> None:
    ca = x509.load_pem_x509_certificate(world.pki()[0].cert_pem).not_valid_after_utc
    facts = world.healthy(now=(ca - datetime.timedelta(days=100)).timestamp(), presented=())
    result = tls.certificate_expiry(facts)
    assert result == Result(
        "certificate-expiry",
        Status.WARN,
        "the CA certificate expires in 100 days",
        f"{CERTS} --rotate-ca",
    )


def _serving_after() -> datetime.datetime:
    return x509.load_pem_x509_certificate(world.pki()[1].cert_pem).not_valid_after_utc


def test_without_a_webhook_or_any_certificate_nothing_is_verified() -> None:
    assert tls.ca_bundle(world.healthy(webhook=None)) == Result(
        "ca-bundle", Status.FAIL, "not checked: no webhook configuration", RESTART
    )
    assert tls.ca_bundle(world.healthy(presented=())).summary == (
        "no certificate to verify: Secret sakura-secrets/sakura-secrets-injector-tls has no tls.crt"
    )
    two = (Presented("a:1", error="timed out"), Presented("b:1", error="refused"))
    assert tls.ca_bundle(world.healthy(presented=two)).summary.endswith(
        "no replica answered (a:1: timed out; b:1: refused)"
    )
    assert tls.certificate_expiry(world.healthy(presented=(), webhook=None)) == Result(
        "certificate-expiry", Status.FAIL, "no certificate found", LOGS
    )


def test_expiry_reads_the_serving_certificate_without_a_bundle_and_the_first_ca_only() -> None:
    only_serving = tls.certificate_expiry(world.healthy(webhook=world.webhook(b"")))
    until = _serving_after().strftime("%Y-%m-%d")
    assert only_serving.summary.startswith(f"serving (10.1.0.4:8443) until {until} (")
    assert "CA" not in only_serving.summary
    second = generate_ca("second")
    both = world.webhook(world.pki()[0].cert_pem + second.cert_pem)
    assert tls.certificate_expiry(world.healthy(webhook=both)).summary.count("CA until") == 1


def test_expiry_boundaries() -> None:
    after = _serving_after()
    at = tls.certificate_expiry(world.healthy(now=after.timestamp()))
    assert at.status == Status.FAIL
    half_a_second = tls.certificate_expiry(world.healthy(now=after.timestamp() - 0.5))
    assert half_a_second.summary == "the serving (10.1.0.4:8443) certificate expires in 0 days"
    twenty = after - datetime.timedelta(days=tls.SERVING_WARN_DAYS)
    assert tls.certificate_expiry(world.healthy(now=twenty.timestamp())).status == Status.PASS
