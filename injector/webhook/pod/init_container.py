"""The init container: fetches the plan's secrets into the tmpfs, then exits.

It carries the plan as data (never annotations to re-parse), runs as the files' owner with
nothing it does not need, and in broker mode reaches the injector with its projected token;
in direct mode it gets Sakura credentials from the user's Secret instead.
"""

from __future__ import annotations

from typing import Any

from contract import Broker, Plan
from contract.pod import (
    ENV_BROKER_CA,
    ENV_BROKER_URL,
    ENV_PLAN,
    ENV_TOKEN_FILE,
    INIT_CONTAINER,
    SECRETS_VOLUME,
    TERMINATION_MESSAGE_PATH,
    TOKEN_DIRECTORY,
    TOKEN_FILE,
    TOKEN_VOLUME,
)
from injector.webhook.pod.resources import Resources
from injector.webhook.settings import WebhookSettings
from sakura.config import ENV_ACCESS_TOKEN, ENV_ACCESS_TOKEN_SECRET, ENV_ENDPOINT, ENV_ZONE

COMMAND = ("python", "-m", "sidecar")


def init_container(plan: Plan, resources: Resources, settings: WebhookSettings) -> dict[str, Any]:
    """The container that runs as the plan's owner and writes its files."""
    mounts: list[dict[str, Any]] = [{"name": SECRETS_VOLUME, "mountPath": plan.directory}]
    if isinstance(plan.mode, Broker):
        mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIRECTORY, "readOnly": True})
    return {
        "name": INIT_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(COMMAND),
        "env": _env(plan, settings),
        "resources": resources.to_dict(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": plan.uid,
            "runAsGroup": plan.gid,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
    }


def _env(plan: Plan, settings: WebhookSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": ENV_PLAN, "value": plan.to_json()}]
    if isinstance(plan.mode, Broker):
        env += [
            {"name": ENV_BROKER_URL, "value": settings.broker_url},
            {"name": ENV_BROKER_CA, "value": settings.broker_ca_pem},
            {"name": ENV_TOKEN_FILE, "value": TOKEN_FILE},
        ]
        return env
    secret = plan.mode.credentials_secret
    # [0]: the official names (the others are legacy spellings the client also reads)
    for key in (ENV_ACCESS_TOKEN[0], ENV_ACCESS_TOKEN_SECRET[0]):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    if settings.sakura_endpoint:
        env.append({"name": ENV_ENDPOINT[0], "value": settings.sakura_endpoint})
    if settings.sakura_zone:
        env.append({"name": ENV_ZONE[0], "value": settings.sakura_zone})
    return env
