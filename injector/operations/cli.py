"""`sakura-secrets-injector`: serve the webhook, bootstrap its TLS, preview a pod offline.

Every flag has an environment-variable equivalent (named in `--help`); a flag given on the
command line wins over the environment. Sakura credentials are never flags: they come from
the official variables (SAKURA_ACCESS_TOKEN, SAKURA_ACCESS_TOKEN_SECRET, legacy SAKURACLOUD_*,
usacloud profiles) through `sakura.SakuraConfig.from_env`, used by the broker.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from starlette.routing import BaseRoute

from contract.annotations import VAULT_ID, short_name
from contract.broker import SECRETS_PATH
from injector.broker.cache import CacheSettings
from injector.operations.authority import Policy
from injector.operations.cert_expiry import CertificateExpiry
from injector.operations.wiring import BrokerSettings
from injector.serving.app import BrokerCaFile, Readiness, create_apps
from injector.serving.connections import ConnectionLimits
from injector.serving.server import Listener, Shutdown
from injector.serving.tls import ReloadingTLS
from injector.webhook.checks import AdmissionCheck
from injector.webhook.settings import MESH_PROXIES, SettingsError, WebhookSettings
from sakura.config import ENV_ENDPOINT, ENV_ZONE

DEFAULT_NAMESPACE = "sakura-secrets"
DEFAULT_SERVICE = "sakura-secrets-injector"
DEFAULT_TLS_SECRET = "sakura-secrets-injector-tls"  # noqa: S105 (a Secret name)
DEFAULT_WEBHOOK_CONFIGURATION = "sakura-secrets-injector"
DEFAULT_CA_SECRET = "sakura-secrets-injector-ca"  # noqa: S105 (a Secret name)
DEFAULT_PORT = 8443
"""The webhook's port (POST /mutate only)."""
DEFAULT_BROKER_PORT = 9443
"""The broker's port (POST /v1/secrets); it answers /healthz, /readyz, /metrics too."""
DEFAULT_PROBE_PORT = 8081
"""The probe port (plain HTTP): the kubelet's /healthz, /readyz and Prometheus's /metrics."""
DEFAULT_BROKER_SERVICE_PORT = 443
PREVIEW_IMAGE = "sakura-secrets-injector:preview"
DISTRIBUTION = "sakura-secrets-injector"
"""The installed distribution whose version `--version` prints (pyproject.toml's, the only copy)."""


class UsageError(Exception):
    """A flag or environment variable is missing or invalid; the message names both."""


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; defaults come from `env` (the process environment by default)."""
    source = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="sakura-secrets-injector",
        description="Sakura Cloud Secret Manager secrets into Kubernetes pods as tmpfs files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version(DISTRIBUTION)}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the admission webhook and broker over TLS")
    _option(serve, source, "--host", "SAKURA_SECRETS_HOST", "address to listen on", "0.0.0.0")  # noqa: S104
    _option(
        serve,
        source,
        "--port",
        "SAKURA_SECRETS_PORT",
        "webhook TLS port: POST /mutate only",
        DEFAULT_PORT,
        int,
    )
    _option(
        serve,
        source,
        "--broker-port",
        "SAKURA_SECRETS_BROKER_PORT",
        f"broker TLS port: POST {SECRETS_PATH} (and /healthz, /readyz, /metrics, as on "
        "--probe-port)",
        DEFAULT_BROKER_PORT,
        int,
    )
    _option(
        serve,
        source,
        "--probe-port",
        "SAKURA_SECRETS_PROBE_PORT",
        "plain-HTTP port for the kubelet's probes and Prometheus: /healthz, /readyz, /metrics; "
        "its own small connection bound, out of the clients' way",
        DEFAULT_PROBE_PORT,
        int,
    )
    _option(
        serve,
        source,
        "--webhook-client-ca-file",
        "SAKURA_SECRETS_WEBHOOK_CLIENT_CA_FILE",
        "PEM CA bundle: the webhook port then requires a client certificate it signed (the "
        "API server's, from its admission configuration); never the broker port",
    )
    _connection_options(serve, source)
    _option(
        serve,
        source,
        "--tls-cert-file",
        "SAKURA_SECRETS_TLS_CERT_FILE",
        "PEM serving certificate (reloaded when it changes)",
        required=True,
    )
    _option(
        serve,
        source,
        "--tls-key-file",
        "SAKURA_SECRETS_TLS_KEY_FILE",
        "PEM private key of the serving certificate",
        required=True,
    )
    _option(serve, source, "--log-level", "SAKURA_SECRETS_LOG_LEVEL", "log level", "info")
    _settings_options(serve, source, image_default=None)
    _broker_options(serve, source)

    certs = commands.add_parser(
        "certs", help="create or reuse the TLS Secret and patch the webhook's caBundle"
    )
    _location_options(certs, source)
    _option(
        certs,
        source,
        "--secret",
        "SAKURA_SECRETS_TLS_SECRET",
        "kubernetes.io/tls Secret holding tls.crt, tls.key, ca.crt",
        DEFAULT_TLS_SECRET,
    )
    _option(
        certs,
        source,
        "--webhook-configuration",
        "SAKURA_SECRETS_WEBHOOK_CONFIGURATION",
        "MutatingWebhookConfiguration whose caBundle is patched",
        DEFAULT_WEBHOOK_CONFIGURATION,
    )
    _certs_options(certs, source)
    _option(certs, source, "--log-level", "SAKURA_SECRETS_LOG_LEVEL", "log level", "info")

    render = commands.add_parser(
        "render", help="print the pod the webhook would admit (offline, no cluster)"
    )
    render.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="pod YAML or JSON; - for stdin"
    )
    _settings_options(render, source, image_default=PREVIEW_IMAGE)

    commands.add_parser(
        "demo",
        help="run the whole path locally: emulator, webhook over TLS, init fetcher (no cluster)",
    )

    from injector.broker.can_i import add_can_i_parser

    add_can_i_parser(commands)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sakura-secrets-injector` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "render":
            return _render(args)
        if args.command == "demo":
            from injector.operations.demo import run

            return run()
        if args.command == "can-i":
            from injector.broker.can_i import can_i_command

            return can_i_command(args)
    except UsageError as error:
        parser.exit(2, f"sakura-secrets-injector {args.command}: {error}\n")
    parser.exit(2, f"unknown command {args.command!r}\n")


def settings_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> WebhookSettings:
    """The webhook settings from the parsed flags; UsageError names the flag to fix."""
    source = os.environ if env is None else env
    if not args.init_image:
        raise UsageError("--init-image (SAKURA_SECRETS_INIT_IMAGE) is required")
    broker_ca_pem = ""
    if args.broker_ca_file:
        try:
            broker_ca_pem = Path(args.broker_ca_file).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            if args.command != "serve":  # serve re-reads it; it may appear after start-up
                raise UsageError(f"--broker-ca-file {args.broker_ca_file}: {error}") from None
    if not 0 < args.broker_service_port < 65536:
        raise UsageError(
            f"--broker-service-port {args.broker_service_port} must be a TCP port (1-65535)"
        )
    port = "" if args.broker_service_port == 443 else f":{args.broker_service_port}"
    broker_url = args.broker_url or f"https://{args.service}.{args.namespace}.svc{port}"
    try:
        return WebhookSettings(
            image=args.init_image,
            broker_url=broker_url,
            broker_ca_pem=broker_ca_pem,
            injector_namespace=args.namespace,
            default_vault_id=args.default_vault_id or None,
            sakura_endpoint=_first(source, ENV_ENDPOINT),
            sakura_zone=_first(source, ENV_ZONE),
            image_pull_policy=args.image_pull_policy,
            volume_size_limit=args.volume_size_limit,
            mesh_proxy_containers=_proxy_containers(args.mesh_proxy_containers),
            review_timeout=args.webhook_timeout,
        )
    except SettingsError as error:
        raise UsageError(str(error)) from None


def _proxy_containers(extra: str | None) -> tuple[str, ...]:
    """The known mesh proxies and the flag's comma-separated names."""
    names = [n.strip() for n in (extra or "").split(",") if n.strip()]
    return tuple(dict.fromkeys([*MESH_PROXIES, *names]))


def build_listeners_from_args(
    args: argparse.Namespace,
) -> tuple[list[Listener], Sequence[Shutdown]]:
    """The production listeners for `serve`: the webhook's port and the broker's, both TLS.

    Only the webhook port gets the client CA; the broker port (init containers, probes,
    Prometheus) never asks for a client certificate.
    """
    _check_ports(args)
    cert, key = Path(args.tls_cert_file), Path(args.tls_key_file)
    client_ca = Path(args.webhook_client_ca_file) if args.webhook_client_ca_file else None
    webhook_tls = ReloadingTLS(cert, key, client_ca_file=client_ca)
    broker_tls = ReloadingTLS(cert, key)
    settings = settings_from_args(args)
    broker_ca = BrokerCaFile(Path(args.broker_ca_file)) if args.broker_ca_file else None
    readiness: list[Readiness] = [broker_tls.readiness]
    if client_ca is not None:
        readiness.append(webhook_tls.readiness)  # names the client CA file if it is unreadable
    if broker_ca is not None:
        readiness.append(broker_ca.readiness)
    check, routes, broker_readiness, shutdown = _broker_parts(args, settings)
    REGISTRY.register(CertificateExpiry(broker_tls, broker_ca))  # once per process: `serve` only
    apps = create_apps(
        settings,
        check=check,
        routes=routes,
        readiness=[*readiness, *broker_readiness],
        broker_ca=broker_ca,
        registry=REGISTRY,
    )
    listeners = [
        Listener("webhook", apps.webhook, webhook_tls, args.port),
        Listener("broker", apps.broker, broker_tls, args.broker_port),
        Listener("probes", apps.probes, None, args.probe_port),
    ]
    return listeners, shutdown


def _check_ports(args: argparse.Namespace) -> None:
    flags = (("--port", args.port), ("--broker-port", args.broker_port))
    for flag, port in (*flags, ("--probe-port", args.probe_port)):
        if not 0 < port < 65536:
            raise UsageError(f"{flag} {port} must be a TCP port (1-65535)")
    if args.port == args.broker_port:
        raise UsageError(
            f"--port and --broker-port are both {args.port}: the webhook and the broker need "
            "two ports (the webhook's may require client certificates, the broker's never)"
        )
    for flag, port in flags:
        if port == args.probe_port:
            raise UsageError(
                f"{flag} and --probe-port are both {port}: the probes need a port of their "
                "own (plain HTTP, with its own connection bound)"
            )


def connection_limits_from_args(args: argparse.Namespace) -> ConnectionLimits:
    """The slow-client bounds from the parsed flags; UsageError names the flag to fix."""
    for flag, seconds in (
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
        ("--handshake-timeout", args.handshake_timeout),
        ("--send-timeout", args.send_timeout),
    ):
        if not 0 < seconds <= 300:
            raise UsageError(f"{flag} {seconds:g} must be above 0 and at most 300 seconds")
    if not 1 <= args.max_connections <= 100_000:
        raise UsageError(
            f"--max-connections {args.max_connections} must be between 1 and 100000 (per port)"
        )
    per_address = args.max_connections_per_address or None
    if per_address is not None and not 1 <= per_address <= args.max_connections:
        raise UsageError(
            f"--max-connections-per-address {per_address} must be between 1 and "
            f"--max-connections ({args.max_connections}), or 0 for the default share"
        )
    return ConnectionLimits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout,
        send_timeout=args.send_timeout,
        per_address=per_address,
    )


def _broker_parts(
    args: argparse.Namespace, settings: WebhookSettings
) -> tuple[AdmissionCheck, Sequence[BaseRoute], Sequence[Readiness], Sequence[Shutdown]]:
    """BROKER WIRING (extend here): the real AdmissionCheck (SubjectAccessReview per secret,
    cached existence check), the broker's routes (`POST /v1/secrets`), its readiness checks
    and what to close at shutdown, from `SakuraConfig.from_env()` and the Kubernetes client.

    Never return a check that admits everything: `serve` refuses to start without the
    admission-time RBAC checks rather than skip them.
    """
    from injector.kube import KubeConfigError, api_client
    from injector.operations.wiring import build_broker
    from sakura import SakuraConfig, SakuraConfigError

    try:
        sakura_config = SakuraConfig.from_env()
    except SakuraConfigError as error:
        raise UsageError(
            f"Sakura credentials: {error} (set SAKURA_ACCESS_TOKEN and "
            "SAKURA_ACCESS_TOKEN_SECRET, e.g. from the sakura-api-key Secret)"
        ) from None
    try:
        kube = api_client()
    except KubeConfigError as error:
        raise UsageError(str(error)) from None
    parts = build_broker(
        sakura_config, kube_api_client=kube, settings=broker_settings_from_args(args)
    )
    ready = (parts.credentials.readiness,) if parts.credentials is not None else ()
    return parts.check, parts.routes, ready, (parts.aclose,)


def _serve(args: argparse.Namespace) -> int:
    from injector.serving.server import DescriptorLimitError, serve

    _configure_logging(args.log_level)
    limits = connection_limits_from_args(args)
    listeners, shutdown = build_listeners_from_args(args)
    for listener in listeners:
        if listener.tls is not None and listener.tls.loaded is None:
            logging.getLogger(__name__).warning(
                "%s port: %s; waiting for the files", listener.name, listener.tls.readiness()
            )
    try:
        serve(listeners, host=args.host, limits=limits, log_level=args.log_level, shutdown=shutdown)
    except DescriptorLimitError as error:
        raise UsageError(str(error)) from None
    return 0


def _certs(args: argparse.Namespace) -> int:
    from injector.operations.certs_bootstrap import (
        BootstrapError,
        BootstrapTarget,
        bootstrap,
        describe,
        kube_api_client,
        renew_forever,
    )

    _configure_logging(args.log_level)
    target = BootstrapTarget(
        namespace=args.namespace,
        service=args.service,
        secret=args.secret,
        webhook_configuration=args.webhook_configuration,
        ca_secret=args.ca_secret,
    )
    policy = _renewal_policy(args)
    if args.interval < 0:
        raise UsageError(f"--interval {args.interval:g} must be 0 (run once) or more")
    try:
        api = kube_api_client()
        if args.interval and not (args.once or args.rotate_ca):
            renew_forever(api, target, interval=args.interval, policy=policy)
            return 0
        result = bootstrap(api, target, policy=policy, rotate_ca=args.rotate_ca)
    except BootstrapError as error:
        print(f"sakura-secrets-injector certs: {error}", file=sys.stderr)
        return 1
    print(describe(result))
    return 0


def _renewal_policy(args: argparse.Namespace) -> Policy:
    if not 0 < args.renew_before:
        raise UsageError(f"--renew-before {args.renew_before:g} must be above 0 days")
    if not 0 <= args.ca_overlap:
        raise UsageError(f"--ca-overlap {args.ca_overlap:g} must be 0 days or more")
    return Policy(
        renew_before=datetime.timedelta(days=args.renew_before),
        overlap=datetime.timedelta(days=args.ca_overlap),
    )


def _certs_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """How `certs` keeps the CA and renews; docs/webhook.md explains each."""
    _option(
        parser,
        env,
        "--ca-secret",
        "SAKURA_SECRETS_CA_SECRET",
        "Secret holding the CA key (ca.crt, ca.key, retired.crt); only certs may read it",
        DEFAULT_CA_SECRET,
    )
    _option(
        parser,
        env,
        "--interval",
        "SAKURA_SECRETS_CERTS_INTERVAL",
        "seconds between renewal checks; 0 runs once and exits",
        0.0,
        float,
    )
    _option(
        parser,
        env,
        "--renew-before",
        "SAKURA_SECRETS_RENEW_BEFORE",
        "days before expiry the serving certificate is renewed (a wide window forces a renewal)",
        30.0,
        float,
    )
    _option(
        parser,
        env,
        "--ca-overlap",
        "SAKURA_SECRETS_CA_OVERLAP",
        "days a CA rotation keeps serving the old CA's certificate while both CAs are trusted",
        30.0,
        float,
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one round and exit, whatever --interval says (kubectl exec into the loop)",
    )
    parser.add_argument(
        "--rotate-ca",
        action="store_true",
        help="make a new CA now (trusted at once, signing after --ca-overlap); implies --once",
    )


def _render(args: argparse.Namespace) -> int:
    from injector.operations.render import PreviewDenied, PreviewError, render_pod

    settings = settings_from_args(args)
    try:
        if args.filename == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read -f {args.filename}: {error}") from None
    try:
        sys.stdout.write(render_pod(text, settings))
    except PreviewDenied as denial:
        for warning in denial.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"denied: {denial.message}", file=sys.stderr)
        return 1
    except PreviewError as error:
        print(f"sakura-secrets-injector render: {error}", file=sys.stderr)
        return 1
    return 0


def _broker_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The broker's cache and quota knobs that operators tune; docs/broker.md explains each."""
    defaults = BrokerSettings()
    for flag, variable, help_text, default in (
        (
            "--latest-ttl",
            "SAKURA_SECRETS_LATEST_TTL",
            "seconds a latest value is reused (how fast a rotation reaches new pods)",
            defaults.cache.latest_ttl,
        ),
        (
            "--stale-for",
            "SAKURA_SECRETS_STALE_FOR",
            "seconds a latest value may be served while Sakura throttles or fails",
            defaults.cache.stale_for,
        ),
        (
            "--sakura-rate-per-minute",
            "SAKURA_SECRETS_SAKURA_RATE_PER_MINUTE",
            "Sakura calls per minute for the whole installation, shared by its ready replicas "
            "(Sakura allows about 100 per account: set it lower when other clusters or tools "
            "use the same API key)",
            defaults.rate_per_minute,
        ),
        (
            "--negative-ttl",
            "SAKURA_SECRETS_NEGATIVE_TTL",
            "seconds a missing vault, secret or version is believed missing without asking "
            "Sakura again (at most the listing's 30s)",
            defaults.negative_ttl,
        ),
        (
            "--admission-timeout",
            "SAKURA_SECRETS_ADMISSION_TIMEOUT",
            "seconds the admission-time RBAC and existence checks may take in all",
            defaults.admission_timeout,
        ),
    ):
        _option(parser, env, flag, variable, help_text, default, float)
    _option(
        parser,
        env,
        "--sakura-waiting-per-namespace",
        "SAKURA_SECRETS_SAKURA_WAITING_PER_NAMESPACE",
        "reads of one namespace that may wait for Sakura's rate limit; more get HTTP 429",
        defaults.waiting_per_namespace,
        int,
    )


def broker_settings_from_args(args: argparse.Namespace) -> BrokerSettings:
    """The broker's settings from the parsed flags; UsageError names the flag to fix."""
    try:
        cache = CacheSettings(latest_ttl=args.latest_ttl, stale_for=args.stale_for)
    except ValueError as error:
        raise UsageError(f"--latest-ttl/--stale-for: {error}") from None
    if not 0 < args.sakura_rate_per_minute <= 100:
        raise UsageError(
            f"--sakura-rate-per-minute {args.sakura_rate_per_minute:g} must be above 0 and at "
            "most 100, Sakura's quota"
        )
    if not 0 < args.admission_timeout < 10:
        raise UsageError(
            f"--admission-timeout {args.admission_timeout:g} must be above 0 and under the "
            "webhook's timeoutSeconds (10)"
        )
    if not 0 < args.negative_ttl <= BrokerSettings().listing_ttl:
        raise UsageError(
            f"--negative-ttl {args.negative_ttl:g} must be above 0 and at most "
            f"{BrokerSettings().listing_ttl:g}s (how long a vault's listing is reused)"
        )
    if args.sakura_waiting_per_namespace < 1:
        raise UsageError(
            f"--sakura-waiting-per-namespace {args.sakura_waiting_per_namespace} must be at least 1"
        )
    return BrokerSettings(
        cache=cache,
        rate_per_minute=args.sakura_rate_per_minute,
        admission_timeout=args.admission_timeout,
        negative_ttl=args.negative_ttl,
        waiting_per_namespace=args.sakura_waiting_per_namespace,
        replicas_of=(args.namespace, args.service),
    )


def _connection_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Bounds on slow or numerous clients, per port; docs/webhook.md explains each."""
    defaults = ConnectionLimits()
    _option(
        parser,
        env,
        "--header-timeout",
        "SAKURA_SECRETS_HEADER_TIMEOUT",
        "seconds a connection may take to send a request's headers (idle time included)",
        defaults.header_timeout,
        float,
    )
    _option(
        parser,
        env,
        "--body-timeout",
        "SAKURA_SECRETS_BODY_TIMEOUT",
        "seconds a request may take to send its body once its headers are in",
        defaults.body_timeout,
        float,
    )
    _option(
        parser,
        env,
        "--max-connections",
        "SAKURA_SECRETS_MAX_CONNECTIONS",
        "connections each TLS port holds at once, counted from accept; when full, the oldest "
        "idle one is closed for a new one, and a new one is refused only when all are busy",
        defaults.max_connections,
        int,
    )
    _option(
        parser,
        env,
        "--max-connections-per-address",
        "SAKURA_SECRETS_MAX_CONNECTIONS_PER_ADDRESS",
        "connections one client address holds on a TLS port; 0: a quarter of "
        "--max-connections, at least 8",
        0,
        int,
    )
    _option(
        parser,
        env,
        "--handshake-timeout",
        "SAKURA_SECRETS_HANDSHAKE_TIMEOUT",
        "seconds a connection may take to finish its TLS handshake once accepted",
        defaults.handshake_timeout,
        float,
    )
    _option(
        parser,
        env,
        "--send-timeout",
        "SAKURA_SECRETS_SEND_TIMEOUT",
        "seconds a client has to read an answer the server could not send at once; then it "
        "is dropped and the answer freed",
        defaults.send_timeout,
        float,
    )


def _location_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    _option(
        parser,
        env,
        "--namespace",
        "POD_NAMESPACE",
        "namespace the injector runs in",
        DEFAULT_NAMESPACE,
    )
    _option(
        parser,
        env,
        "--service",
        "SAKURA_SECRETS_SERVICE",
        "the injector's Service name",
        DEFAULT_SERVICE,
    )


def _settings_options(
    parser: argparse.ArgumentParser, env: Mapping[str, str], *, image_default: str | None
) -> None:
    _location_options(parser, env)
    _option(
        parser,
        env,
        "--init-image",
        "SAKURA_SECRETS_INIT_IMAGE",
        "image of the injected init container (the injector's own image)",
        image_default,
    )
    _option(
        parser,
        env,
        "--image-pull-policy",
        "SAKURA_SECRETS_IMAGE_PULL_POLICY",
        "pull policy of the injected init container",
        "IfNotPresent",
    )
    _option(
        parser,
        env,
        "--broker-url",
        "SAKURA_SECRETS_BROKER_URL",
        "https URL init containers use to reach the broker "
        "(default https://SERVICE.NAMESPACE.svc[:BROKER_SERVICE_PORT])",
    )
    _option(
        parser,
        env,
        "--broker-service-port",
        "SAKURA_SECRETS_BROKER_SERVICE_PORT",
        "the Service port in front of --broker-port, for the default --broker-url",
        DEFAULT_BROKER_SERVICE_PORT,
        int,
    )
    _option(
        parser,
        env,
        "--broker-ca-file",
        "SAKURA_SECRETS_BROKER_CA_FILE",
        "PEM CA bundle init containers trust for the broker (re-read when it changes)",
    )
    _option(
        parser,
        env,
        "--default-vault-id",
        "SAKURA_SECRETS_DEFAULT_VAULT_ID",
        f"vault used when a pod has no {short_name(VAULT_ID)} annotation",
    )
    _option(
        parser,
        env,
        "--volume-size-limit",
        "SAKURA_SECRETS_VOLUME_SIZE_LIMIT",
        "size limit of the injected tmpfs volume",
        "8Mi",
    )
    _option(
        parser,
        env,
        "--mesh-proxy-containers",
        "SAKURA_SECRETS_MESH_PROXY_CONTAINERS",
        "comma-separated names of service-mesh proxy containers that get no mount unless the "
        f"containers annotation names them, in addition to {', '.join(MESH_PROXIES)}",
    )
    _option(
        parser,
        env,
        "--webhook-timeout",
        "SAKURA_SECRETS_WEBHOOK_TIMEOUT",
        "the webhook configuration's timeoutSeconds: reviews that cannot be answered within it "
        "get a fast 429 denial instead of waiting",
        10.0,
        float,
    )


def _option(
    parser: argparse.ArgumentParser,
    env: Mapping[str, str],
    flag: str,
    variable: str,
    help_text: str,
    default: Any = None,
    kind: type = str,
    *,
    required: bool = False,
) -> None:
    """A flag whose default is the environment variable's value, else `default`."""
    raw = env.get(variable)
    value: Any = default
    if raw:
        try:
            value = kind(raw)
        except ValueError:
            parser.error(f"{variable}={raw!r} is not a valid {kind.__name__} for {flag}")
    suffix = f" [env {variable}" + (f"; default {default}]" if default is not None else "]")
    parser.add_argument(
        flag,
        type=kind,
        default=value,
        required=required and value is None,
        help=help_text + suffix,
    )


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
