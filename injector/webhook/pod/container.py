"""What every container the webhook adds shares: the image, the plan and its way to the
values (broker or direct), the hardening, and the mounts.

The init container (`init_container`) and the refresh container (`refresh_container`) are
this one shape with their own name, command and resources: they run as the files' owner
with nothing they do not need, carry the plan as data (never annotations to re-parse), and in
broker mode reach the injector with the projected token; in direct mode they get Sakura
credentials from the user's Secret instead. Only they mount the token and write the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract import Broker, Plan
from contract.pod import (
    ENV_BROKER_CA,
    ENV_BROKER_URL,
    ENV_PLAN,
    ENV_TOKEN_FILE,
    SECRETS_VOLUME,
    TERMINATION_MESSAGE_PATH,
    TOKEN_DIRECTORY,
    TOKEN_FILE,
    TOKEN_VOLUME,
)
from injector.webhook.pod.resources import Resources
from injector.webhook.settings import WebhookSettings
from sakura.config import (
    ENV_ACCESS_TOKEN,
    ENV_ACCESS_TOKEN_SECRET,
    ENV_ENDPOINT,
    ENV_PRINCIPAL_ID,
    ENV_PRINCIPAL_KEY_ID,
    ENV_PRIVATE_KEY,
    ENV_TOKEN_ENDPOINT,
    ENV_ZONE,
)

DIRECT_CREDENTIAL_KEYS = tuple(
    names[0]
    for names in (
        ENV_ACCESS_TOKEN,
        ENV_ACCESS_TOKEN_SECRET,
        ENV_PRINCIPAL_ID,
        ENV_PRINCIPAL_KEY_ID,
        ENV_PRIVATE_KEY,
        ENV_TOKEN_ENDPOINT,
    )
)
"""The keys of a direct-mode pod's credentials Secret the init container reads: an API key
pair or a service principal (and its token endpoint), each by Sakura's own name."""


def our_container(
    name: str,
    command: Sequence[str],
    plan: Plan,
    resources: Resources,
    settings: WebhookSettings,
) -> dict[str, Any]:
    """A container that runs as the plan's owner and writes its files."""
    mounts: list[dict[str, Any]] = [{"name": SECRETS_VOLUME, "mountPath": plan.directory}]
    if isinstance(plan.mode, Broker):
        mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIRECTORY, "readOnly": True})
    return {
        "name": name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
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
    # [0]: the official names (the others are legacy spellings the client also reads). The
    # Secret holds one kind: an API key pair or a service principal, so each key is optional
    # and the init container names what is missing (sakura.config).
    for key in DIRECT_CREDENTIAL_KEYS:
        ref = {"name": secret, "key": key, "optional": True}
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    if settings.sakura_endpoint:
        env.append({"name": ENV_ENDPOINT[0], "value": settings.sakura_endpoint})
    if settings.sakura_zone:
        env.append({"name": ENV_ZONE[0], "value": settings.sakura_zone})
    return env
