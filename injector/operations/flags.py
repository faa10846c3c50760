"""What the commands share of the command line: a flag with its environment variable, the
webhook's settings flags, and the way a setting's own refusal is said with its flag.

Every flag has an environment-variable equivalent (named in `--help`); a flag given on the
command line wins over the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.annotations import VAULT_ID, short_name
from injector.operations.errors import UsageError
from injector.operations.log_format import FORMATS as LOG_FORMATS
from injector.operations.log_format import configure as configure_log_format
from injector.operations.native_sidecars import MODES
from injector.setting import OutOfRange
from injector.webhook.settings import MESH_PROXIES, SettingsError, WebhookSettings
from sakura.config import ENV_ENDPOINT, ENV_ZONE

DEFAULT_NAMESPACE = "sakura-secrets"
DEFAULT_SERVICE = "sakura-secrets-injector"
DEFAULT_BROKER_SERVICE_PORT = 443


def option(
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


def flagged(error: OutOfRange, args: argparse.Namespace, flags: Mapping[str, str]) -> UsageError:
    """A setting's refusal said with its flag and the value given, and every other setting
    its rule names as that flag and its value: `--max-connections-per-address 17 must be
    between 1 and --max-connections (16)`. `flags` maps field names to flags."""
    if error.setting not in flags:
        return UsageError(str(error))
    rule = error.rule
    for setting, flag in flags.items():
        if setting != error.setting:
            rule = re.sub(rf"\b{setting}\b", f"{flag} ({_given(args, flag)})", rule)
    flag = flags[error.setting]
    return UsageError(f"{flag} {_given(args, flag)} {rule}")


def _given(args: argparse.Namespace, flag: str) -> str:
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    return f"{value:g}" if isinstance(value, float) else str(value)


def location_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    option(
        parser,
        env,
        "--namespace",
        "POD_NAMESPACE",
        "namespace the injector runs in",
        DEFAULT_NAMESPACE,
    )
    option(
        parser,
        env,
        "--service",
        "SAKURA_SECRETS_SERVICE",
        "the injector's Service name",
        DEFAULT_SERVICE,
    )


def log_level_option(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """`--log-level` and `--log-format` (docs/operations.md, "Logs")."""
    option(parser, env, "--log-level", "SAKURA_SECRETS_LOG_LEVEL", "log level", "info")
    option(
        parser,
        env,
        "--log-format",
        "SAKURA_SECRETS_LOG_FORMAT",
        f"log lines as {' or '.join(LOG_FORMATS)}: one JSON object per line, or text",
        "json",
    )


def settings_options(
    parser: argparse.ArgumentParser, env: Mapping[str, str], *, image_default: str | None
) -> None:
    """The flags of `WebhookSettings` (serve and render)."""
    location_options(parser, env)
    option(
        parser,
        env,
        "--init-image",
        "SAKURA_SECRETS_INIT_IMAGE",
        "image of the injected init container (the injector's own image)",
        image_default,
    )
    option(
        parser,
        env,
        "--image-pull-policy",
        "SAKURA_SECRETS_IMAGE_PULL_POLICY",
        "pull policy of the injected init container",
        "IfNotPresent",
    )
    option(
        parser,
        env,
        "--broker-url",
        "SAKURA_SECRETS_BROKER_URL",
        "https URL init containers use to reach the broker "
        "(default https://SERVICE.NAMESPACE.svc[:BROKER_SERVICE_PORT])",
    )
    option(
        parser,
        env,
        "--broker-service-port",
        "SAKURA_SECRETS_BROKER_SERVICE_PORT",
        "the Service port in front of --broker-port, for the default --broker-url",
        DEFAULT_BROKER_SERVICE_PORT,
        int,
    )
    option(
        parser,
        env,
        "--broker-ca-file",
        "SAKURA_SECRETS_BROKER_CA_FILE",
        "PEM CA bundle init containers trust for the broker (re-read when it changes)",
    )
    option(
        parser,
        env,
        "--default-vault-id",
        "SAKURA_SECRETS_DEFAULT_VAULT_ID",
        f"vault used when a pod has no {short_name(VAULT_ID)} annotation",
    )
    option(
        parser,
        env,
        "--volume-size-limit",
        "SAKURA_SECRETS_VOLUME_SIZE_LIMIT",
        "size limit of the injected tmpfs volume",
        "8Mi",
    )
    option(
        parser,
        env,
        "--mesh-proxy-containers",
        "SAKURA_SECRETS_MESH_PROXY_CONTAINERS",
        "comma-separated names of service-mesh proxy containers that get no mount unless the "
        f"containers annotation names them, in addition to {', '.join(MESH_PROXIES)}",
    )
    option(
        parser,
        env,
        "--webhook-timeout",
        "SAKURA_SECRETS_WEBHOOK_TIMEOUT",
        "the webhook configuration's timeoutSeconds: reviews that cannot be answered within it "
        "get a fast 429 denial instead of waiting",
        10.0,
        float,
    )
    option(
        parser,
        env,
        "--native-sidecars",
        "SAKURA_SECRETS_NATIVE_SIDECARS",
        "the refresh container's shape (refresh-interval): always, a native sidecar (Kubernetes "
        "1.29+, or 1.28 with the SidecarContainers gate); never, a plain container; auto, "
        "native when the API server is 1.29+ (serve asks it at start-up and every 10 minutes; "
        "render, which has no cluster, renders the plain one)",
        "auto",
    )
    option(
        parser,
        env,
        "--env-files",
        "SAKURA_SECRETS_ENV_FILES",
        "whether pods may get env-VAR variables (the kubelet reads them from an env file, "
        "fileKeyRef): always; never, such pods are refused; auto, when the API server is 1.35+ "
        "(serve asks it with --native-sidecars; render, which has no cluster, refuses them "
        "unless --kubernetes-version says 1.35+)",
        "auto",
    )


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
    if args.native_sidecars not in MODES:
        raise UsageError(
            f"--native-sidecars {args.native_sidecars!r} must be one of {', '.join(MODES)}"
        )
    if args.env_files not in MODES:
        raise UsageError(f"--env-files {args.env_files!r} must be one of {', '.join(MODES)}")
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
            native_sidecars=args.native_sidecars == "always",  # auto: serve asks the cluster
            env_files=args.env_files == "always",
        )
    except SettingsError as error:
        raise UsageError(str(error)) from None


def _proxy_containers(extra: str | None) -> tuple[str, ...]:
    """The known mesh proxies and the flag's comma-separated names."""
    names = [n.strip() for n in (extra or "").split(",") if n.strip()]
    return tuple(dict.fromkeys([*MESH_PROXIES, *names]))


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def configure_logging(level: str, log_format: str = "json") -> None:
    """The process's logging (`injector.operations.log_format`); UsageError names the flag."""
    if log_format not in LOG_FORMATS:
        raise UsageError(f"--log-format {log_format!r} must be one of {', '.join(LOG_FORMATS)}")
    if logging.getLevelName(level.upper()) not in range(0, 51):
        raise UsageError(f"--log-level {level!r} must be debug, info, warning, error or critical")
    configure_log_format(level, log_format)
