"""The command line: flags and their environment variables, `render`, refusal messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli_kit import run_injector

from injector.operations.cli import build_parser
from injector.operations.commands.serve import (
    broker_tuning_from_args,
    connection_limits_from_args,
    listeners_from_args,
)
from injector.operations.errors import UsageError
from injector.operations.flags import settings_from_args
from injector.serving.connections import ConnectionLimits

ROOT = Path(__file__).resolve().parents[2]
POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations:
    sakura-secrets.io/inject: "true"
    sakura-secrets.io/secret-db: db-password
spec:
  containers:
  - name: app
    image: nginx
"""


run = run_injector


def test_environment_supplies_defaults_and_flags_win() -> None:
    env = {
        "SAKURA_SECRETS_PORT": "9443",
        "POD_NAMESPACE": "injector-ns",
        "SAKURA_SECRETS_INIT_IMAGE": "img:1",
        "SAKURA_SECRETS_DEFAULT_VAULT_ID": "123456789012",
        "SAKURA_SECRETS_TLS_CERT_FILE": "/c",
        "SAKURA_SECRETS_TLS_KEY_FILE": "/k",
        "SAKURA_ZONE": "is1a",
    }
    args = build_parser(env).parse_args(["serve", "--init-image", "img:2"])
    settings = settings_from_args(args, env)
    assert args.port == 9443
    assert settings.image == "img:2"
    assert settings.injector_namespace == "injector-ns"
    assert settings.broker_url == "https://sakura-secrets-injector.injector-ns.svc"
    assert settings.default_vault_id == "123456789012"
    assert settings.sakura_zone == "is1a"


def test_more_mesh_proxies_come_from_a_flag_or_the_environment() -> None:
    args = build_parser({}).parse_args(["render", "-f", "-"])
    assert settings_from_args(args, {}).mesh_proxy_containers == ("istio-proxy", "linkerd-proxy")
    env = {"SAKURA_SECRETS_MESH_PROXY_CONTAINERS": "envoy, ,kuma-sidecar,istio-proxy"}
    args = build_parser(env).parse_args(["render", "-f", "-"])
    assert settings_from_args(args, env).mesh_proxy_containers == (
        "istio-proxy",
        "linkerd-proxy",
        "envoy",
        "kuma-sidecar",
    )
    args = build_parser(env).parse_args(["render", "-f", "-", "--mesh-proxy-containers", "Ab"])
    with pytest.raises(UsageError, match="mesh_proxy_containers: 'Ab' is not a container name"):
        settings_from_args(args, env)


def test_a_bad_setting_names_the_flag() -> None:
    args = build_parser({}).parse_args(
        ["render", "-f", "-", "--default-vault-id", "12", "--broker-url", "https://b"]
    )
    with pytest.raises(UsageError, match="default_vault_id"):
        settings_from_args(args, {})


def test_the_webhook_timeout_comes_from_flag_or_environment_and_is_checked() -> None:
    env = {"SAKURA_SECRETS_WEBHOOK_TIMEOUT": "20"}
    render = ["render", "-f", "-"]
    assert settings_from_args(build_parser(env).parse_args(render), env).review_timeout == 20
    args = build_parser(env).parse_args([*render, "--webhook-timeout", "5"])
    assert settings_from_args(args, env).review_timeout == 5
    assert settings_from_args(build_parser({}).parse_args(render), {}).review_timeout == 10
    args = build_parser({}).parse_args([*render, "--webhook-timeout", "31"])
    with pytest.raises(UsageError, match=r"review_timeout 31\.0 must be the webhook's timeoutSec"):
        settings_from_args(args, {})


def test_serve_requires_its_certificate_files() -> None:
    result = run("serve")
    assert result.returncode == 2
    assert "--tls-cert-file" in result.stderr


SERVE = ["serve", "--tls-cert-file", "/c", "--tls-key-file", "/k", "--init-image", "img:1"]


def test_the_webhook_and_the_broker_get_two_ports_from_flags_or_environment() -> None:
    env = {"SAKURA_SECRETS_BROKER_PORT": "10443", "SAKURA_SECRETS_WEBHOOK_CLIENT_CA_FILE": "/ca"}
    args = build_parser(env).parse_args([*SERVE, "--port", "9000"])
    assert (args.port, args.broker_port, args.webhook_client_ca_file) == (9000, 10443, "/ca")
    defaults = build_parser({}).parse_args(SERVE)
    assert (defaults.port, defaults.broker_port, defaults.webhook_client_ca_file) == (
        8443,
        9443,
        None,
    )


def test_the_default_broker_url_carries_a_service_port_other_than_443() -> None:
    env = {"POD_NAMESPACE": "ns", "SAKURA_SECRETS_BROKER_SERVICE_PORT": "9443"}
    args = build_parser(env).parse_args(SERVE)
    assert settings_from_args(args, env).broker_url == "https://sakura-secrets-injector.ns.svc:9443"
    args = build_parser({}).parse_args([*SERVE, "--broker-service-port", "443"])
    assert settings_from_args(args, {}).broker_url.endswith(".svc")
    args = build_parser({}).parse_args([*SERVE, "--broker-service-port", "0"])
    with pytest.raises(UsageError, match="--broker-service-port 0"):
        settings_from_args(args, {})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "9443", "--broker-port", "9443"], "--port and --broker-port are both 9443"),
        (["--broker-port", "70000"], "--broker-port 70000 must be a TCP port"),
        (["--port", "0"], "--port 0 must be a TCP port"),
        (["--probe-port", "65536"], "--probe-port 65536 must be a TCP port"),
        (["--probe-port", "8443"], "--port and --probe-port are both 8443"),
        (["--probe-port", "9443"], "--broker-port and --probe-port are both 9443"),
    ],
)
def test_bad_ports_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    args = build_parser({}).parse_args([*SERVE, *flags])
    with pytest.raises(UsageError, match=message):
        listeners_from_args(args)


def test_slow_client_bounds_have_defaults_and_are_checked_naming_the_flag() -> None:
    assert connection_limits_from_args(build_parser({}).parse_args(SERVE)) == ConnectionLimits()
    env = {"SAKURA_SECRETS_HEADER_TIMEOUT": "2.5", "SAKURA_SECRETS_MAX_CONNECTIONS": "32"}
    limits = connection_limits_from_args(
        build_parser(env).parse_args([*SERVE, "--body-timeout", "4"])
    )
    assert (limits.header_timeout, limits.body_timeout, limits.max_connections) == (2.5, 4.0, 32)
    for flags, message in (
        (["--header-timeout", "0"], "--header-timeout 0 must be above 0"),
        (["--body-timeout", "301"], "--body-timeout 301 must be above 0 and at most 300"),
        (["--max-connections", "0"], "--max-connections 0 must be between 1 and 100000"),
        (["--handshake-timeout", "0"], "--handshake-timeout 0 must be above 0"),
        (["--send-timeout", "300.5"], "--send-timeout 300.5 must be above 0 and at most 300"),
        (
            ["--max-connections", "16", "--max-connections-per-address", "17"],
            "--max-connections-per-address 17 must be between 1 and --max-connections .16.",
        ),
        (["--max-connections-per-address", "-1"], "--max-connections-per-address -1 must be"),
    ):
        with pytest.raises(UsageError, match=message):
            connection_limits_from_args(build_parser({}).parse_args([*SERVE, *flags]))


def test_the_connection_bounds_of_issue_15_come_from_flags_or_environment() -> None:
    env = {"SAKURA_SECRETS_HANDSHAKE_TIMEOUT": "2", "SAKURA_SECRETS_PROBE_PORT": "9090"}
    args = build_parser(env).parse_args(
        [*SERVE, "--send-timeout", "3", "--max-connections-per-address", "5"]
    )
    limits = connection_limits_from_args(args)
    assert (limits.handshake_timeout, limits.send_timeout, limits.per_address) == (2.0, 3.0, 5)
    assert limits.address_share == 5
    assert args.probe_port == 9090
    defaults = build_parser({}).parse_args(SERVE)
    assert defaults.probe_port == 8081
    assert connection_limits_from_args(defaults).address_share == 64  # a quarter of 256


def test_a_bad_port_in_the_environment_is_named() -> None:
    with pytest.raises(SystemExit):
        build_parser({"SAKURA_SECRETS_PORT": "https"})


def test_render_prints_the_mutated_pod(tmp_path: Path) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    result = run("render", "-f", str(pod), "--default-vault-id", "123456789012")
    assert result.returncode == 0, result.stderr
    assert "name: sakura-secrets-init" in result.stdout
    assert "sakura-secrets.io/status: injected" in result.stdout
    assert "offline preview" in result.stdout


def test_render_reads_stdin_and_reports_a_denial_on_stderr() -> None:
    bad = POD.replace("secret-db", "secret-..db")
    result = run("render", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "denied:" in result.stderr and "sakura-secrets.io/secret-..db" in result.stderr


def test_render_refuses_input_that_is_not_a_pod(tmp_path: Path) -> None:
    missing = run("render", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    garbage = run("render", "-f", "-", stdin="a: [unclosed")
    assert garbage.returncode == 1 and "YAML" in garbage.stderr


SERVE = ["serve", "--tls-cert-file", "/c", "--tls-key-file", "/k", "--init-image", "i"]


def test_broker_knobs_come_from_flags_or_environment() -> None:
    env = {"SAKURA_SECRETS_STALE_FOR": "600", "SAKURA_SECRETS_SAKURA_RATE_PER_MINUTE": "50"}
    args = build_parser(env).parse_args([*SERVE, "--latest-ttl", "5"])
    settings = broker_tuning_from_args(args)
    assert settings.cache.latest_ttl == 5
    assert settings.cache.stale_for == 600
    assert settings.rate_per_minute == 50
    assert settings.admission_timeout == 4.0
    assert (settings.negative_ttl, settings.waiting_per_namespace) == (10.0, 10)
    # the budget is the installation's: shared by the ready replicas of the injector's Service
    assert settings.replicas_of == ("sakura-secrets", "sakura-secrets-injector")


def test_fair_use_knobs_come_from_flags_or_environment() -> None:
    env = {"SAKURA_SECRETS_SAKURA_WAITING_PER_NAMESPACE": "4", "POD_NAMESPACE": "infra"}
    args = build_parser(env).parse_args([*SERVE, "--negative-ttl", "20", "--service", "inj"])
    settings = broker_tuning_from_args(args)
    assert (settings.negative_ttl, settings.waiting_per_namespace) == (20.0, 4)
    assert settings.replicas_of == ("infra", "inj")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--latest-ttl", "60", "--stale-for", "30"], "stale_for"),
        (["--sakura-rate-per-minute", "150"], "at most 100"),
        (["--sakura-rate-per-minute", "0"], "above 0"),
        (["--admission-timeout", "12"], "timeoutSeconds"),
        (["--negative-ttl", "0"], "--negative-ttl 0 must be above 0"),
        (["--negative-ttl", "60"], "at most 30s"),
        (["--sakura-waiting-per-namespace", "0"], "--sakura-waiting-per-namespace 0 must be"),
    ],
)
def test_broker_knobs_out_of_range_name_the_flag(flags: list[str], message: str) -> None:
    args = build_parser({}).parse_args([*SERVE, *flags])
    with pytest.raises(UsageError, match=message):
        broker_tuning_from_args(args)


def test_doctor_names_a_bad_workload_before_asking_any_cluster(tmp_path: Path) -> None:
    bad = run("doctor", "--deployment", "api", "--kubeconfig", str(tmp_path / "none"))
    assert bad.returncode == 2
    assert "doctor: --deployment 'api': write NAMESPACE/NAME" in bad.stderr
    missing = run("doctor", "--pod", str(tmp_path / "pod.yaml"))
    assert missing.returncode == 2
    assert f"doctor: cannot read --pod {tmp_path / 'pod.yaml'}" in missing.stderr
    both = run("doctor", "--pod", "x", "--deployment", "a/b")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_doctor_without_credentials_says_where_it_looked(tmp_path: Path) -> None:
    proc = run("doctor", "--kubeconfig", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "doctor: no Kubernetes credentials" in proc.stderr
