"""The benchmarks still run, at a small size, and still meet their own goals.

Their figures are for people to read (see benchmarks/); this only keeps the scripts from rotting.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_webhook_benchmark_measures_both_targets() -> None:
    out = run("benchmarks/webhook.py", "--seconds", "1", "--rate", "50")
    figures = r"\s+(\d+)\s+[\d.]+\s+[\d.]+\s+0\b"  # req/s, p50, p99, no failure
    for pod in ("typical", "largest"):
        for target in ("bare (parse+echo)", "/mutate"):
            for paced in ("", " @50/s"):
                row = re.search(rf"^{pod}\s+{re.escape(target + paced)}{figures}", out, re.M)
                assert row is not None and int(row.group(1)) > 0, out
        ratio = rf"^{pod}\s+ratio /mutate / bare\s+[\d.]+x\s+goal >= 0.5x: .*by CPU per request"
        assert re.search(ratio, out, re.M), out
        assert re.search(rf"^{pod}\s+/mutate @50/s.*goal p99 <= 5 ms", out, re.M), out


def test_admission_size_benchmark_reviews_every_shape() -> None:
    out = run("benchmarks/admission_size.py", "--sizes", "1,4", "--runs", "1", "--analysis")
    for shape in ("one-template", "many-templates", "many-secrets", "nested-blocks"):
        rows = re.findall(rf"^{shape}\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\w+)", out, re.M)
        assert len(rows) == 2, out
        assert all(outcome == "admitted" for *_, outcome in rows), out
        assert re.search(rf"^{shape}\s+growth [\d.]+x$", out, re.M), out
    assert re.search(r"^at-limits\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+admitted$", out, re.M), out
    assert re.search(r"blocks nested \d+ deep", out), out
    assert len(re.findall(r"^template_refs\s+\d+\s+1\s+[\d.]+\s+[\d.]+$", out, re.M)) == 2, out


def test_init_fetch_benchmark_fetches_each_secret_once() -> None:
    out = run("benchmarks/init_fetch.py", "--runs", "1")
    for mode in ("broker", "direct"):
        assert re.search(rf"^python -m sidecar \({mode}\)\s+\d+ ms", out, re.M), out
        ratios = r"\s+[\d.]+ x" * 3  # wall, CPU, RSS
        assert re.search(rf"^ratio \({mode}\){ratios}\s+goal <= 1.5 x", out, re.M), out
    for floor in ("client", "request", "reads"):
        assert re.search(rf"^ratio \(floor: {floor}\)" + r"\s+[\d.]+ x" * 3 + "$", out, re.M), out
    assert "files written to " in out
    assert "Sakura calls (direct): 10 per fetch (the reads floor's 10 apart)" in out


@pytest.mark.cluster
def test_broker_load_benchmark_meets_its_goals() -> None:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: this benchmark needs a real API server")
    out = run("-m", "benchmarks.broker_load", "--pods", "30", "--in-flight", "10")
    assert re.search(r"sakura calls:\s+6 ", out), out  # the vault's listing and 5 unveils
    kube = re.search(
        r"kubernetes:\s+TokenReview (\d+), SubjectAccessReview (\d+), pod read (\d+)", out
    )
    assert kube is not None, out
    # one review per pod's own token, the vault and 5 pairs once, no pod read after a review
    assert [int(n) for n in kube.groups()] == [30, 6, 0], out
    assert re.search(r"^api server saw:\s+TokenReview \d+", out, re.M), out
    assert re.search(r"failed:\s+0 ", out), out
    assert re.search(
        r"^broker:\s+[\d.]+ CPU s \([\d.]+ ms a pod; \d+% .* peak RSS \d+ MiB", out, re.M
    )
    assert re.search(r"^client:\s+\d+% of one core", out, re.M), out


@pytest.mark.cluster
def test_hostile_benchmark_prints_a_row_per_attack() -> None:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: this benchmark needs a real API server")
    out = run(
        *("-m", "benchmarks.hostile", "--seconds", "0.5", "--idle", "20", "--silent", "40"),
        *("--unread", "1", "--bombs", "1", "--flood", "1"),
        timeout=600,  # ten fresh injectors, and row 7 outwaits the listing's 30 s
    )
    # fetch p50, p99, n, failures, review p99, probes, peak RSS, descriptors, the injector's
    # share of a CPU
    figures = r"\s+\d+ms\s+\d+ms\s+[1-9]\d*\s+\d+\s+\d+ms\s+\d+%\s+\d+\s+\d+\s+\d+%\s+(ok|FAIL)"
    for label in (
        "0 unattacked",
        "1 idle TLS conns",
        "2 silent sockets",
        "3 huge answers, unread",
        "4 3 MiB lists to /mutate",
        "5 TokenReview/SAR flood",
        "6 cross-pair read",
        "7 deleted pinned version",
        "8 forged review, no policy",
        "8b forged review, client CA",
        "0 unattacked, again",
    ):
        assert re.search(rf"^{re.escape(label)}{figures}", out, re.M), out
    # without a policy a forged review learns what the check knows; with a client CA nothing
    unjudged = r"(ok|FAIL\((probes|fetch|review|rss)(,(fetch|review|rss))*\))"  # no "finding"
    assert re.search(
        rf"^8 forged review, no policy .* {unjudged}\s+learns grants, existence$", out, re.M
    )
    assert re.search(r"^8b forged review, client CA .* learns nothing \([\w, ]+\)$", out, re.M)
    for label in ("9 PriorityClass", "10 template errors"):
        assert re.search(rf"^{label}\s+n/a", out, re.M), out
    assert "goals: probes 100% answered within 1 s" in out, out


@pytest.mark.cluster
def test_refresh_load_benchmark_spends_listings_not_unveils() -> None:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: this benchmark needs a real API server")
    out = run(
        *("-m", "benchmarks.refresh_load", "--pods", "10", "--seconds", "50"),
        *("--interval", "10", "--latest-ttl", "10"),
    )
    sakura = re.search(r"sakura calls:\s+\{'list_secrets': (\d+), 'unveil': (\d+)\}", out)
    assert sakura is not None, out
    listings, unveils = int(sakura.group(1)), int(sakura.group(2))
    assert listings <= 8 and unveils == 6, out  # 5 first reads and the one new version
    kube = re.search(r"kubernetes:\s+(\{.*\}) \(at the broker", out)
    assert kube is not None, out
    calls = ast.literal_eval(kube.group(1))  # the printed counts by kind
    assert calls["TokenReview"] == 10, out  # one per token, not one per refresh
    assert calls["SubjectAccessReview"] <= 6 * 3, out  # 6 per 30 s, shared by the pods
    assert re.search(r"change reached:\s+10/10 pods", out), out
    assert re.search(r"^refreshes:.*'unchanged': [1-9]", out, re.M), out


@pytest.mark.cluster
def test_soak_benchmark_prints_a_row_per_minute_and_the_ratios() -> None:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: this benchmark needs a real API server")
    out = run("-m", "benchmarks.soak", "--minutes", "2", "--interval", "3", "--tokens", "2")
    number = r"\s+([\d.]+)"
    rows = re.findall(
        rf"^\s+(\d+){number}{number}ms\s+(\d+){number}{number}ms\s+(\d+){number}\s+(\d+)\s+\d+$",
        out,
        re.M,
    )
    assert [row[0] for row in rows] == ["1", "2"], out
    for _, adm_rate, _, adm_failed, fetch_rate, _, fetch_failed, rss, fds in rows:
        assert float(adm_rate) > 0 and float(fetch_rate) > 0, out  # both kinds were driven
        assert adm_failed == fetch_failed == "0", out
        assert float(rss) > 0 and int(fds) > 0, out  # read from the injector's /proc entry
    assert re.search(r"^last/first minute: RSS [\d.]+x .* fds [\d.]+x", out, re.M), out
    assert re.search(r"^failed: 0 of [1-9]\d* requests", out, re.M), out
