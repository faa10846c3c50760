"""The init container: fetches the plan's secrets into the tmpfs, then exits.

It is the shape every container of ours has (`pod.container`): the plan's owner, hardened,
the plan as data, the token (broker mode) or the user's credentials (direct mode).
"""

from __future__ import annotations

from typing import Any

from contract import Plan
from contract.pod import INIT_COMMAND, INIT_CONTAINER
from injector.webhook.pod.container import our_container
from injector.webhook.pod.env import env_mount
from injector.webhook.pod.resources import Resources
from injector.webhook.settings import WebhookSettings


def init_container(plan: Plan, resources: Resources, settings: WebhookSettings) -> dict[str, Any]:
    """The container that runs as the plan's owner and writes its files (and, with
    variables, the env file) once."""
    container = our_container(INIT_CONTAINER, INIT_COMMAND, plan, resources, settings)
    if plan.env:
        container["volumeMounts"].append(env_mount(plan))
    return container
