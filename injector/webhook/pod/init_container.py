"""The init container: fetches the plan's secrets into the tmpfs, then exits.

It carries the plan as data (never annotations to re-parse), runs as the files' owner with
nothing it does not need, and in broker mode reaches the injector with its projected token;
in direct mode it gets Sakura credentials from the user's Secret instead.
"""

from __future__ import annotations

from typing import Any

from contract import Broker, Plan
from injector.webhook.pod.resources import Resources
from injector.webhook.pod.volumes import SECRETS_VOLUME, TOKEN_DIRECTORY, TOKEN_FILE, TOKEN_VOLUME
from injector.webhook.settings import WebhookSettings

INIT_CONTAINER = "sakura-secrets-init"
COMMAND = ("python", "-m", "sidecar")
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


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
    env: list[dict[str, Any]] = [{"name": "SAKURA_SECRETS_PLAN", "value": plan.to_json()}]
    if isinstance(plan.mode, Broker):
        env += [
            {"name": "SAKURA_SECRETS_BROKER_URL", "value": settings.broker_url},
            {"name": "SAKURA_SECRETS_BROKER_CA", "value": settings.broker_ca_pem},
            {"name": "SAKURA_SECRETS_TOKEN_FILE", "value": TOKEN_FILE},
        ]
        return env
    secret = plan.mode.credentials_secret
    for key in ("SAKURA_ACCESS_TOKEN", "SAKURA_ACCESS_TOKEN_SECRET"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    if settings.sakura_endpoint:
        env.append({"name": "SAKURA_ENDPOINTS_SECRETMANAGER", "value": settings.sakura_endpoint})
    if settings.sakura_zone:
        env.append({"name": "SAKURA_ZONE", "value": settings.sakura_zone})
    return env
