"""What the init container is told: the environment the webhook wired into it.

Broker mode (the default): the plan, the broker's URL and CA, and the projected token file.
Direct mode (annotation credentials-secret): the plan and the official Sakura env variables.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contract import Direct, Plan, PlanError
from contract.annotations import CREDENTIALS_SECRET, REFRESH_INTERVAL, short_name
from contract.pod import (
    ENV_BROKER_CA,
    ENV_BROKER_URL,
    ENV_DEADLINE,
    ENV_PLAN,
    ENV_TERMINATION_LOG,
    ENV_TOKEN_FILE,
    TERMINATION_MESSAGE_PATH,
    TOKEN_FILE,
)
from sakura import SakuraConfig, SakuraConfigError
from sakura.config import ENV_ACCESS_TOKEN, ENV_ACCESS_TOKEN_SECRET
from sidecar.errors import BadPlan, ConfigError

DEFAULT_DEADLINE = 60.0


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to trust and authenticate to it."""

    url: str
    ssl_context: ssl.SSLContext = field(repr=False)
    token_file: Path


@dataclass(frozen=True)
class FetchConfig:
    """Everything one run needs: where the values come from follows plan.mode (the broker's
    settings for a Broker plan, the pod's own Sakura key for a Direct one)."""

    plan: Plan
    deadline: float
    source: BrokerSettings | SakuraConfig


def termination_log_path(env: Mapping[str, str]) -> str:
    """Known before anything else is read, so even a bad environment is reported."""
    return env.get(ENV_TERMINATION_LOG, "").strip() or TERMINATION_MESSAGE_PATH


def load(env: Mapping[str, str]) -> FetchConfig:
    plan = load_plan(env)
    deadline = load_deadline(env)
    if isinstance(plan.mode, Direct):
        try:
            sakura = SakuraConfig.from_env(env)
        except SakuraConfigError as exc:
            raise ConfigError(
                f"direct mode ({short_name(CREDENTIALS_SECRET)}): {exc.message}; check that the "
                f"Secret named by {CREDENTIALS_SECRET} holds {ENV_ACCESS_TOKEN[0]} and "
                f"{ENV_ACCESS_TOKEN_SECRET[0]}"
            ) from None
        return FetchConfig(plan=plan, deadline=deadline, source=sakura)
    return FetchConfig(plan=plan, deadline=deadline, source=load_broker(env))


def load_plan(env: Mapping[str, str]) -> Plan:
    text = env.get(ENV_PLAN, "")
    if not text.strip():
        raise BadPlan(
            f"{ENV_PLAN} is not set; this container is meant to be injected by "
            "sakura-secrets-injector, which writes the plan"
        )
    try:
        return Plan.from_json(text)
    except PlanError as exc:
        raise BadPlan(f"{ENV_PLAN}: {exc}") from None


def refresh_interval(plan: Plan) -> int:
    """The refresh container's period; a plan without one was not meant for it."""
    if plan.refresh_interval is None:
        raise BadPlan(
            f"{ENV_PLAN} has no refresh_interval, so there is nothing to refresh; the refresh "
            f"container runs only in pods with the {REFRESH_INTERVAL} annotation, which the "
            "webhook turns into the plan's interval: re-create the pod through the webhook"
        )
    return plan.refresh_interval


def load_deadline(env: Mapping[str, str]) -> float:
    text = env.get(ENV_DEADLINE, "").strip()
    if not text:
        return DEFAULT_DEADLINE
    try:
        deadline = float(text)
    except ValueError:
        deadline = math.nan
    if not (math.isfinite(deadline) and deadline > 0):
        raise ConfigError(f"{ENV_DEADLINE}={text!r} is not a positive number of seconds, e.g. 60")
    return deadline


def load_broker(env: Mapping[str, str]) -> BrokerSettings:
    url = env.get(ENV_BROKER_URL, "").strip().rstrip("/")
    if not url:
        raise ConfigError(
            f"{ENV_BROKER_URL} is not set; broker mode needs the injector's URL "
            "(the webhook sets it from its --broker-url setting)"
        )
    if not url.startswith("https://"):
        raise ConfigError(
            f"{ENV_BROKER_URL}={url!r} must start with https://; the token and the values "
            "never travel in clear text"
        )
    token_file = Path(env.get(ENV_TOKEN_FILE, "").strip() or TOKEN_FILE)
    return BrokerSettings(url=url, ssl_context=broker_ssl_context(env), token_file=token_file)


def broker_ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """Trust only the CA the webhook handed over; the system store only if none was given."""
    pem = env.get(ENV_BROKER_CA, "").strip()
    if not pem:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"{ENV_BROKER_CA} is not a PEM certificate ({type(exc).__name__}); the webhook "
            "copies it from the injector's CA, check the injector's --broker-ca setting"
        ) from None
