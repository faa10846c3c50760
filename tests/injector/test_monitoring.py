"""The optional monitoring overlay (manifests/monitoring/): rendered by kubectl's kustomize, its
ServiceMonitor scrapes the port the injector serves /metrics on, and its alerts parse as PromQL
(promql-parser, the dev extra), name only metrics the injector serves (scraped from a probe
port built the way `serve` builds it), and each has a runbook in docs/operations.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import promql_parser
import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from support.manifests import MANIFESTS, NAMESPACE, by_kind, render
from support.webhook_harness import write_pair

from injector.broker.metrics import CALL_OUTCOMES
from injector.operations.certs import generate_ca, issue_serving_cert
from injector.operations.wiring import Ports, TlsFiles, build_broker, build_listeners
from injector.serving.server import serving_in_thread
from injector.webhook.settings import WebhookSettings
from sakura import SakuraConfig

ROOT = MANIFESTS.parent
OPERATIONS = ROOT / "docs" / "operations.md"
ALERTS = {
    "SakuraSecretsNoReadyReplica",
    "SakuraSecretsCertificateExpiring",
    "SakuraSecretsKeyRejected",
    "SakuraSecretsThrottled",
    "SakuraSecretsBudgetExhausted",
    "SakuraSecretsAdmissionSlow",
}
"""What the issue asks to be alerted on: no ready replica, a certificate expiring, the key
rejected, sustained throttling, the budget exhausted, admission near the webhook's timeout."""


@pytest.fixture(scope="module")
def monitoring() -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render(MANIFESTS / "monitoring")}


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return by_kind(render(MANIFESTS))


@pytest.fixture(scope="module")
def rules(monitoring: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [group] = monitoring["PrometheusRule"]["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Metric name -> its label names, as scraped from the probe port of an injector built
    the way `serve` builds it (every part registering in one registry), before any traffic."""
    tmp = tmp_path_factory.mktemp("tls")
    ca = generate_ca("monitoring-test-ca")
    write_pair(tmp, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    registry = CollectorRegistry()
    config = SakuraConfig(access_token="t", access_token_secret="s", base_url="http://127.0.0.1:9")
    broker = build_broker(config, kube_api_client=k8s.ApiClient(), registry=registry)
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca.cert_pem.decode(),
    )
    files = TlsFiles(tmp / "tls.crt", tmp / "tls.key", broker_ca=tmp / "ca.crt")
    listeners, shutdown = build_listeners(
        settings, broker, files, Ports(0, 0, 0), registry=registry
    )
    probes = [item for item in listeners if item.name == "probes"]
    with serving_in_thread(probes, shutdown=shutdown) as [url]:
        assert url.startswith("http://")  # plain HTTP: what the ServiceMonitor scrapes
        scrape = httpx.get(f"{url}/metrics", timeout=10)
    assert scrape.status_code == 200
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape.text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = set()
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
"""The series a family of each type is queried by (a family with no sample yet shows none)."""


def _selectors(expr: Any) -> Iterator[Any]:
    """Every VectorSelector of a parsed PromQL expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield expr.vector_selector
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from _selectors(expr.lhs)
        yield from _selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            yield from _selectors(arg)
    elif isinstance(
        expr,
        promql_parser.AggregateExpr
        | promql_parser.ParenExpr
        | promql_parser.UnaryExpr
        | promql_parser.SubqueryExpr,
    ):
        yield from _selectors(expr.expr)


def test_the_overlay_is_a_service_monitor_and_a_rule_in_the_injectors_namespace(
    monitoring: dict[str, dict[str, Any]],
) -> None:
    assert sorted(monitoring) == ["PrometheusRule", "ServiceMonitor"]
    for obj in monitoring.values():
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_the_service_monitor_scrapes_the_probe_ports_plain_metrics(
    monitoring: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    monitor = monitoring["ServiceMonitor"]["spec"]
    service = base["Service"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == (
        "metrics",
        "/metrics",
        "http",
    )
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["metrics"]["targetPort"] == "probes"
    [container] = base["Deployment"]["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    # the annotation-based scrape config reads the same port
    annotations = service["metadata"]["annotations"]
    assert (
        annotations["prometheus.io/port"] == str(named["probes"]) == str(ports["metrics"]["port"])
    )
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/path"]) == (
        "true",
        "/metrics",
    )
    # and the NetworkPolicy lets a scraper from a labelled namespace reach it
    rules = {r["ports"][0]["port"]: r for r in base["NetworkPolicy"]["spec"]["ingress"]}
    assert rules["probes"]["from"] == [
        {"namespaceSelector": {"matchLabels": {"sakura-secrets-metrics": "allowed"}}}
    ]


def test_every_asked_alert_is_there_with_a_severity_and_a_duration(
    rules: dict[str, dict[str, Any]],
) -> None:
    assert set(rules) == ALERTS
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert re.fullmatch(r"\d+[mh]", rule["for"])
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_expression_parses_and_names_only_metrics_the_injector_serves(
    rules: dict[str, dict[str, Any]], served: dict[str, set[str]]
) -> None:
    used = set()
    for name, rule in rules.items():
        expr = promql_parser.parse(rule["expr"])
        for selector in _selectors(expr):
            assert selector.name in served, f"{name}: {selector.name} is not a metric served"
            used.add(selector.name)
            for matcher in selector.matchers.matchers:
                labels = served[selector.name]
                assert matcher.name in labels, f"{name}: {selector.name} has no {matcher.name}"
                if matcher.name == "outcome" and selector.name.startswith("sakura_secrets_sakura"):
                    assert matcher.value in CALL_OUTCOMES
    assert {
        "sakura_secrets_ready",
        "sakura_secrets_certificate_expiry_timestamp_seconds",
        "sakura_secrets_sakura_calls_total",
        "sakura_secrets_sakura_budget_tokens",
        "sakura_secrets_admission_seconds_bucket",
    } == used


def test_a_broken_expression_would_be_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(sakura_secrets_sakura_calls_total[5m])")


def test_the_latency_alert_fires_before_the_webhooks_timeout(
    rules: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    [webhook] = base["MutatingWebhookConfiguration"]["webhooks"]
    expr = promql_parser.parse(rules["SakuraSecretsAdmissionSlow"]["expr"])
    assert isinstance(expr.rhs, promql_parser.NumberLiteral)
    assert expr.rhs.val == 0.8 * webhook["timeoutSeconds"]
    description = " ".join(
        rules["SakuraSecretsAdmissionSlow"]["annotations"]["description"].split()
    )
    assert f"timeoutSeconds is {webhook['timeoutSeconds']}." in description


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_that_says_what_how_to_confirm_and_how_to_fix(
    rules: dict[str, dict[str, Any]],
) -> None:
    text = OPERATIONS.read_text()
    section = text.split("\n## Alerts and runbooks\n", 1)[1].split("\n## ", 1)[0]
    runbooks = dict(re.findall(r"\n### (\S+)\n(.*?)(?=\n### |\Z)", section, re.S))
    assert set(runbooks) == ALERTS
    for name, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{_slug(name)}"
        for part in ("**Means:**", "**Confirm:**", "**Fix:**"):
            assert part in runbooks[name], f"{name}'s runbook has no {part}"


def test_the_metrics_table_lists_every_metric_the_injector_serves(
    served: dict[str, set[str]],
) -> None:
    text = OPERATIONS.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(sakura_secrets_[a-z_]+)`", section, re.M))
    ours = {
        n
        for n in served
        if n.startswith("sakura_secrets_") and not n.endswith(("_created", "_sum", "_count"))
    }
    ours = {n.removesuffix("_bucket") for n in ours}
    assert ours == listed
