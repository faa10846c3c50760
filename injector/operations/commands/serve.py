"""`serve`: the admission webhook, the broker and the probes, from flags and the environment.

Sakura credentials are never flags: they come from the files of the mounted sakura-api-key
Secret (`--sakura-credentials-dir`, re-read when they change: a key rotates without a restart),
or else from the official variables (SAKURA_ACCESS_TOKEN, SAKURA_ACCESS_TOKEN_SECRET, legacy
SAKURACLOUD_*, usacloud profiles) through `sakura.SakuraConfig.from_env`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.broker import SECRETS_PATH
from injector.broker.cache import CacheSettings
from injector.broker.tuning import BrokerTuning
from injector.operations.env_files import EnvFiles
from injector.operations.errors import UsageError
from injector.operations.flags import (
    configure_logging,
    flagged,
    log_level_option,
    option,
    settings_from_args,
    settings_options,
)
from injector.operations.native_sidecars import NativeSidecars
from injector.serving.connections import ConnectionLimits
from injector.serving.server import Drain, Listener, Shutdown
from injector.setting import OutOfRange

DEFAULT_PORT = 8443
"""The webhook's port (POST /mutate only)."""
DEFAULT_BROKER_PORT = 9443
"""The broker's port (POST /v1/secrets); it answers /healthz, /readyz, /metrics too."""
DEFAULT_PROBE_PORT = 8081
"""The probe port (plain HTTP): the kubelet's /healthz, /readyz and Prometheus's /metrics."""
LIMIT_FLAGS = {
    "header_timeout": "--header-timeout",
    "body_timeout": "--body-timeout",
    "handshake_timeout": "--handshake-timeout",
    "send_timeout": "--send-timeout",
    "max_connections": "--max-connections",
    "per_address": "--max-connections-per-address",
}
"""The fields of ConnectionLimits a flag sets."""
TUNING_FLAGS = {
    "rate_per_minute": "--sakura-rate-per-minute",
    "admission_timeout": "--admission-timeout",
    "negative_ttl": "--negative-ttl",
    "waiting_per_namespace": "--sakura-waiting-per-namespace",
}
"""The fields of BrokerTuning a flag sets (and of its CacheSettings: --latest-ttl, --stale-for)."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], env: Mapping[str, str]
) -> None:
    serve = commands.add_parser("serve", help="serve the admission webhook and broker over TLS")
    option(serve, env, "--host", "SAKURA_SECRETS_HOST", "address to listen on", "0.0.0.0")  # noqa: S104
    option(
        serve, env, "--port", "SAKURA_SECRETS_PORT", "webhook TLS port: POST /mutate only",
        DEFAULT_PORT, int,
    )  # fmt: skip
    option(
        serve,
        env,
        "--broker-port",
        "SAKURA_SECRETS_BROKER_PORT",
        f"broker TLS port: POST {SECRETS_PATH} (and /healthz, /readyz, /metrics, as on "
        "--probe-port)",
        DEFAULT_BROKER_PORT,
        int,
    )
    option(
        serve,
        env,
        "--probe-port",
        "SAKURA_SECRETS_PROBE_PORT",
        "plain-HTTP port for the kubelet's probes and Prometheus: /healthz, /readyz, /metrics; "
        "its own small connection bound, out of the clients' way",
        DEFAULT_PROBE_PORT,
        int,
    )
    option(
        serve,
        env,
        "--webhook-client-ca-file",
        "SAKURA_SECRETS_WEBHOOK_CLIENT_CA_FILE",
        "PEM CA bundle: the webhook port then requires a client certificate it signed (the "
        "API server's, from its admission configuration); never the broker port",
    )
    _connection_options(serve, env)
    option(
        serve,
        env,
        "--tls-cert-file",
        "SAKURA_SECRETS_TLS_CERT_FILE",
        "PEM serving certificate (reloaded when it changes)",
        required=True,
    )
    option(
        serve,
        env,
        "--tls-key-file",
        "SAKURA_SECRETS_TLS_KEY_FILE",
        "PEM private key of the serving certificate",
        required=True,
    )
    option(
        serve,
        env,
        "--sakura-credentials-dir",
        "SAKURA_SECRETS_CREDENTIALS_DIR",
        "directory of the mounted sakura-api-key Secret (files SAKURA_ACCESS_TOKEN, "
        "SAKURA_ACCESS_TOKEN_SECRET), re-read when it changes; without it, the environment's key",
    )
    option(
        serve,
        env,
        "--shutdown-delay",
        "SAKURA_SECRETS_SHUTDOWN_DELAY",
        "seconds between SIGTERM and closing the ports: /readyz fails at once, reviews still "
        "sent here are answered (keep it below terminationGracePeriodSeconds minus 20)",
        5.0,
        float,
    )
    log_level_option(serve, env)
    settings_options(serve, env, image_default=None)
    _broker_options(serve, env)


def run(args: argparse.Namespace) -> int:
    from injector.serving.errors import DescriptorLimitError
    from injector.serving.server import serve

    configure_logging(args.log_level, args.log_format)
    limits = connection_limits_from_args(args)
    if not 0 <= args.shutdown_delay <= 60:
        raise UsageError(f"--shutdown-delay {args.shutdown_delay:g}: give 0 to 60 seconds")
    drain = Drain(args.shutdown_delay)
    listeners, shutdown = listeners_from_args(args, drain)
    for listener in listeners:
        if listener.tls is not None and listener.tls.loaded is None:
            logging.getLogger(__name__).warning(
                "%s port: %s; waiting for the files", listener.name, listener.tls.readiness()
            )
    try:
        serve(
            listeners,
            host=args.host,
            limits=limits,
            log_level=args.log_level,
            shutdown=shutdown,
            drain=drain,
        )
    except DescriptorLimitError as error:
        raise UsageError(str(error)) from None
    return 0


def listeners_from_args(
    args: argparse.Namespace, drain: Drain | None = None
) -> tuple[list[Listener], Sequence[Shutdown]]:
    """The production listeners for `serve`: the webhook's port and the broker's, both TLS,
    and the probes'. The broker's real admission check, never one that admits everything:
    without Sakura credentials or a Kubernetes client, `serve` does not start."""
    from injector.kube import KubeConfigError, api_client
    from injector.operations.sakura_credentials import sakura_credentials
    from injector.operations.wiring import Ports, TlsFiles, build_broker, build_listeners

    _check_ports(args)
    settings = settings_from_args(args)
    tuning = broker_tuning_from_args(args)
    sakura_config, key_files = sakura_credentials(args.sakura_credentials_dir)
    try:
        kube = api_client()
    except KubeConfigError as error:
        raise UsageError(str(error)) from None
    files = TlsFiles(
        Path(args.tls_cert_file),
        Path(args.tls_key_file),
        Path(args.webhook_client_ca_file) if args.webhook_client_ca_file else None,
        Path(args.broker_ca_file) if args.broker_ca_file else None,
    )
    broker = build_broker(sakura_config, kube_api_client=kube, tuning=tuning, credentials=key_files)
    ports = Ports(args.port, args.broker_port, args.probe_port)
    watch = version_watch_from_args(args, kube)
    if watch is None:
        return build_listeners(settings, broker, files, ports, drain=drain)
    native = watch if args.native_sidecars == "auto" else None
    env_files = EnvFiles(watch) if args.env_files == "auto" else None
    listeners, shutdown = build_listeners(
        settings, broker, files, ports, native_sidecars=native, env_files=env_files, drain=drain
    )
    return listeners, (*shutdown, watch.aclose)


def native_sidecars_from_args(args: argparse.Namespace, kube: Any) -> NativeSidecars | None:
    """`--native-sidecars=auto`: the API server's version, read now and on a timer (started);
    always or never: None, the settings say it (`settings_from_args`)."""
    from injector.kube import server_version

    if args.native_sidecars != "auto":
        return None
    watch = NativeSidecars(lambda: server_version(kube))
    watch.start()
    return watch


def version_watch_from_args(args: argparse.Namespace, kube: Any) -> NativeSidecars | None:
    """The API server's version, read now and on a timer (started), when `--native-sidecars`
    or `--env-files` is auto (one read answers both); else None."""
    if args.env_files != "auto":
        return native_sidecars_from_args(args, kube)
    from injector.kube import server_version

    watch = NativeSidecars(lambda: server_version(kube))
    watch.start()
    return watch


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
    try:
        return ConnectionLimits(
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            max_connections=args.max_connections,
            handshake_timeout=args.handshake_timeout,
            send_timeout=args.send_timeout,
            per_address=args.max_connections_per_address or None,
        )
    except OutOfRange as error:
        raise flagged(error, args, LIMIT_FLAGS) from None


def broker_tuning_from_args(args: argparse.Namespace) -> BrokerTuning:
    """The broker's tuning from the parsed flags; UsageError names the flag to fix."""
    try:
        cache = CacheSettings(latest_ttl=args.latest_ttl, stale_for=args.stale_for)
    except ValueError as error:
        raise UsageError(f"--latest-ttl/--stale-for: {error}") from None
    try:
        return BrokerTuning(
            cache=cache,
            rate_per_minute=args.sakura_rate_per_minute,
            admission_timeout=args.admission_timeout,
            negative_ttl=args.negative_ttl,
            waiting_per_namespace=args.sakura_waiting_per_namespace,
            replicas_of=(args.namespace, args.service),
        )
    except OutOfRange as error:
        raise flagged(error, args, TUNING_FLAGS) from None


def _broker_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The broker's cache and quota knobs that operators tune; docs/broker.md explains each."""
    defaults = BrokerTuning()
    for flag, variable, help_text, default in (
        (
            "--latest-ttl",
            "SAKURA_SECRETS_LATEST_TTL",
            "seconds a vault's listing of latest versions is reused (how fast a new version "
            "reaches new and refreshing pods)",
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
        option(parser, env, flag, variable, help_text, default, float)
    option(
        parser,
        env,
        "--sakura-waiting-per-namespace",
        "SAKURA_SECRETS_SAKURA_WAITING_PER_NAMESPACE",
        "reads of one namespace that may wait for Sakura's rate limit; more get HTTP 429",
        defaults.waiting_per_namespace,
        int,
    )


def _connection_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Bounds on slow or numerous clients, per port; docs/webhook.md explains each."""
    defaults = ConnectionLimits()
    option(
        parser,
        env,
        "--header-timeout",
        "SAKURA_SECRETS_HEADER_TIMEOUT",
        "seconds a connection may take to send a request's headers (idle time included)",
        defaults.header_timeout,
        float,
    )
    option(
        parser,
        env,
        "--body-timeout",
        "SAKURA_SECRETS_BODY_TIMEOUT",
        "seconds a request may take to send its body once its headers are in",
        defaults.body_timeout,
        float,
    )
    option(
        parser,
        env,
        "--max-connections",
        "SAKURA_SECRETS_MAX_CONNECTIONS",
        "connections each TLS port holds at once, counted from accept; when full, the oldest "
        "idle one is closed for a new one, and a new one is refused only when all are busy",
        defaults.max_connections,
        int,
    )
    option(
        parser,
        env,
        "--max-connections-per-address",
        "SAKURA_SECRETS_MAX_CONNECTIONS_PER_ADDRESS",
        "connections one client address holds on a TLS port; 0: a quarter of "
        "--max-connections, at least 8",
        0,
        int,
    )
    option(
        parser,
        env,
        "--handshake-timeout",
        "SAKURA_SECRETS_HANDSHAKE_TIMEOUT",
        "seconds a connection may take to finish its TLS handshake once accepted",
        defaults.handshake_timeout,
        float,
    )
    option(
        parser,
        env,
        "--send-timeout",
        "SAKURA_SECRETS_SEND_TIMEOUT",
        "seconds a client has to read an answer the server could not send at once; then it "
        "is dropped and the answer freed",
        defaults.send_timeout,
        float,
    )
