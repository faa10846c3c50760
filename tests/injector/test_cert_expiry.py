"""The expiry gauge follows the files, and a certificate near its end is warned about
periodically, not once: a renewal that keeps failing stays visible in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support.clock import HandClock

from injector.operations.cert_expiry import METRIC, CertificateExpiry
from injector.operations.certs import generate_ca, issue_serving_cert, not_after
from injector.serving.app import BrokerCaFile
from injector.serving.tls import ReloadingTLS


def write_pair(directory: Path) -> tuple[bytes, bytes]:
    ca = generate_ca()
    pair = issue_serving_cert(ca, ["localhost"])
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return ca.cert_pem, pair.cert_pem


def test_the_gauge_reports_the_served_certificate_and_the_ca(tmp_path: Path) -> None:
    ca_pem, cert_pem = write_pair(tmp_path)
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key", check_interval=0)
    registry = CollectorRegistry()
    registry.register(CertificateExpiry(tls, BrokerCaFile(tmp_path / "ca.crt")))
    serving = not_after(cert_pem).timestamp()
    ca = not_after(ca_pem).timestamp()
    assert f'{METRIC}{{certificate="serving"}}' in generate_latest(registry).decode()
    assert registry.get_sample_value(METRIC, {"certificate": "serving"}) == serving
    assert registry.get_sample_value(METRIC, {"certificate": "ca"}) == ca

    # a renewal on disk shows on the next scrape
    _, renewed = write_pair(tmp_path)
    tls.refresh(force=True)
    assert registry.get_sample_value(METRIC, {"certificate": "serving"}) == (
        not_after(renewed).timestamp()
    )


def test_no_sample_before_anything_is_loaded(tmp_path: Path) -> None:
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")
    registry = CollectorRegistry()
    registry.register(CertificateExpiry(tls, BrokerCaFile(tmp_path / "ca.crt")))
    assert registry.get_sample_value(METRIC, {"certificate": "serving"}) is None
    assert registry.get_sample_value(METRIC, {"certificate": "ca"}) is None


def test_a_certificate_near_expiry_is_warned_about_every_hour(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, cert_pem = write_pair(tmp_path)
    expires = not_after(cert_pem).timestamp()
    wall = HandClock(expires - 40 * 86400)
    monotonic = HandClock(0.0)
    caplog.set_level(logging.WARNING, "injector.serving.tls")
    tls = ReloadingTLS(
        tmp_path / "tls.crt",
        tmp_path / "tls.key",
        check_interval=1,
        warn_every=3600,
        clock=monotonic,
        wall_clock=wall,
    )
    assert "expires in" not in caplog.text  # 40 days left: quiet
    wall.now = expires - 10 * 86400
    for step in range(1, 7201, 10):  # two hours of handshakes every 10 s
        monotonic.now = float(step)
        tls.refresh()
    warnings = [r for r in caplog.records if "expires in" in r.getMessage()]
    assert len(warnings) == 2
    assert "10.0 days" in warnings[0].getMessage()
    assert "sakura-secrets-certs" in warnings[0].getMessage()
