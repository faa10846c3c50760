"""The CA over time: renewals keep every bundle ever handed to a pod valid; a rotation trusts
the new CA at once and switches the served certificate only after the overlap."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509

from injector.operations.authority import Authority, Policy, authority_problem, decide
from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert, service_dns_names
from injector.setting import OutOfRange

NAMES = service_dns_names("sakura-secrets-injector", "sakura-secrets")
NOW = datetime.datetime.now(datetime.UTC)
"""Set again before each test: certs.py issues with the real clock (backdated 5 minutes), so a
NOW taken at import would be older than a certificate issued more than 5 minutes into a long
run, which then looks not yet valid."""


@pytest.fixture(autouse=True)
def _now_is_when_the_test_runs() -> None:
    global NOW
    NOW = datetime.datetime.now(datetime.UTC)


DAY = datetime.timedelta(days=1)


def verifies(bundle: bytes, serving: KeyPair) -> bool:
    """Whether a client holding `bundle` (a pod's SAKURA_SECRETS_BROKER_CA) accepts `serving`."""
    leaf = x509.load_pem_x509_certificate(serving.cert_pem)
    store = x509.load_pem_x509_certificates(bundle)
    try:
        from cryptography.x509.verification import PolicyBuilder, Store

        verifier = (
            PolicyBuilder()
            .store(Store(store))
            .time(NOW + DAY)  # the verification in the near future, as a restarted pod does
            .build_server_verifier(x509.DNSName(NAMES[2]))
        )
        verifier.verify(leaf, [])
    except (ValueError, x509.verification.VerificationError):
        return False
    return True


def test_a_fresh_install_makes_a_ca_and_a_certificate_it_signed() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    assert first.authority_changed and first.serving_changed
    assert authority_problem(first.authority) is None
    assert first.bundle == first.authority.issuer.cert_pem
    assert verifies(first.bundle, first.serving)
    assert "made a new CA" in first.reason


def test_good_material_is_kept_as_it_is() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    again = decide(first.authority, first.serving, first.bundle, NAMES, now=NOW)
    assert not again.authority_changed and not again.serving_changed
    assert (again.authority, again.serving, again.bundle) == (
        first.authority,
        first.serving,
        first.bundle,
    )


def test_a_renewal_keeps_the_ca_so_every_bundle_handed_out_stays_valid() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    admitted_with = first.bundle  # what a pod admitted now carries for its whole life
    later = NOW + datetime.timedelta(days=710)  # the serving certificate has 20 days left
    renewed = decide(first.authority, first.serving, first.bundle, NAMES, now=later)
    assert renewed.serving_changed and not renewed.authority_changed
    assert renewed.serving.cert_pem != first.serving.cert_pem
    assert renewed.bundle == admitted_with
    assert verifies(admitted_with, renewed.serving)
    assert "expires" in renewed.reason


def test_a_forced_renewal_is_a_wide_renew_before_window() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    forced = Policy(renew_before=datetime.timedelta(days=3650))
    renewed = decide(first.authority, first.serving, first.bundle, NAMES, now=NOW, policy=forced)
    assert renewed.serving_changed and not renewed.authority_changed
    assert verifies(first.bundle, renewed.serving)


def test_a_ca_rotation_trusts_both_and_switches_only_after_the_overlap() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    rotated = decide(first.authority, first.serving, first.bundle, NAMES, now=NOW, rotate_ca=True)
    assert rotated.authority_changed and not rotated.serving_changed
    assert rotated.authority.issuer != first.authority.issuer
    assert rotated.bundle == rotated.authority.issuer.cert_pem + first.bundle
    assert verifies(first.bundle, rotated.serving)  # pods admitted before still fetch
    during = decide(rotated.authority, rotated.serving, rotated.bundle, NAMES, now=NOW + 29 * DAY)
    assert not during.serving_changed and not during.authority_changed
    after = decide(rotated.authority, rotated.serving, rotated.bundle, NAMES, now=NOW + 31 * DAY)
    assert after.serving_changed and not after.authority_changed
    assert "rotation" in after.reason
    assert verifies(rotated.bundle, after.serving)  # pods admitted during the overlap
    assert after.bundle == rotated.bundle  # the old CA stays trusted until it expires


def test_a_ca_near_its_end_is_rotated() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    late = NOW + datetime.timedelta(days=3650 - 300)
    rotated = decide(first.authority, first.serving, first.bundle, NAMES, now=late)
    assert rotated.authority_changed and "the CA expires" in rotated.reason
    assert first.authority.issuer.cert_pem in rotated.bundle


def test_an_upgrade_keeps_serving_the_old_certificate_under_a_new_kept_ca() -> None:
    """The injector before issue 10 stored no CA key: its CA is retired, not dropped."""
    old_ca = generate_ca()
    old_serving = issue_serving_cert(old_ca, NAMES)
    upgraded = decide(None, old_serving, old_ca.cert_pem, NAMES, now=NOW)
    assert upgraded.authority_changed and not upgraded.serving_changed
    assert upgraded.serving == old_serving
    assert upgraded.bundle == upgraded.authority.issuer.cert_pem + old_ca.cert_pem
    assert "no CA key stored" in upgraded.reason
    switched = decide(
        upgraded.authority, upgraded.serving, upgraded.bundle, NAMES, now=NOW + 31 * DAY
    )
    assert switched.serving_changed and verifies(upgraded.bundle, switched.serving)


def test_a_broken_stored_ca_is_replaced_and_named() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    other = generate_ca()
    broken = Authority(KeyPair(first.authority.issuer.cert_pem, other.key_pem))
    assert "does not belong" in (authority_problem(broken) or "")
    leaf_only = Authority(KeyPair(first.serving.cert_pem, first.serving.key_pem))
    assert "not a CA" in (authority_problem(leaf_only) or "")
    fixed = decide(broken, first.serving, first.bundle, NAMES, now=NOW)
    assert fixed.authority_changed and "does not belong" in fixed.reason
    assert authority_problem(fixed.authority) is None


def test_expired_retired_cas_leave_the_bundle() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    rotated = decide(first.authority, first.serving, first.bundle, NAMES, now=NOW, rotate_ca=True)
    far = NOW + datetime.timedelta(days=3651)
    assert rotated.authority.bundle(far) == rotated.authority.issuer.cert_pem


def test_the_bundle_works_with_pythons_ssl_as_the_init_container_uses_it() -> None:
    first = decide(None, None, b"", NAMES, now=NOW)
    rotated = decide(first.authority, first.serving, first.bundle, NAMES, now=NOW, rotate_ca=True)
    context = ssl.create_default_context(cadata=rotated.bundle.decode("ascii"))
    assert len(context.get_ca_certs()) == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"renew_before": datetime.timedelta(0)}, "renew_before must be above 0 days"),
        ({"ca_renew_before": datetime.timedelta(days=-1)}, "ca_renew_before must be above 0 days"),
        ({"overlap": datetime.timedelta(seconds=-1)}, "overlap must be 0 days or more"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_when_built(
    fields: dict[str, datetime.timedelta], message: str
) -> None:
    with pytest.raises(OutOfRange) as caught:
        Policy(**fields)
    assert str(caught.value) == message
    assert Policy(overlap=datetime.timedelta(0)).overlap == datetime.timedelta(0)
