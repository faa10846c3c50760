"""The refresh container (`refresh-interval`): keeps the files current while the pod runs.

The init container's shape (`pod.container`: the same image, plan, hardening, token or
credentials, the secrets volume read-write) with its own command and small resources. Where
the cluster has native sidecars (Kubernetes 1.29+) it goes among the init containers, after
ours, with `restartPolicy: Always`: the kubelet starts it once the files exist, keeps it
running beside the app, and stops it when the app ends, so a Job completes. Elsewhere it is a
plain app container (`pod_checks.check_plain_refresh` refuses pods that must terminate).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from contract import Plan
from contract.pod import REFRESH_COMMAND, REFRESH_CONTAINER
from injector.webhook.pod.container import our_container
from injector.webhook.pod.resources import Resources
from injector.webhook.settings import WebhookSettings


def refresh_container(
    plan: Plan, resources: Resources, settings: WebhookSettings
) -> dict[str, Any]:
    """The refresh container, native sidecar or plain by `settings.native_sidecars`.

    Its plan has no variables: a running process keeps its environment, so the refresh reads
    only the files' secrets (and its record then lists only those)."""
    files_only = dataclasses.replace(plan, env=()) if plan.env else plan
    container = our_container(REFRESH_CONTAINER, REFRESH_COMMAND, files_only, resources, settings)
    if settings.native_sidecars:
        container["restartPolicy"] = "Always"
    return container
