"""Old pod + plan + settings -> the JSON patch that injects, and the new pod it makes. Pure.

It computes only: the pod has passed `pod_checks` (room for our parts) before it gets here.

The patch is built from the parts injection adds (volumes, init container, the refresh
container where the plan refreshes, mounts, status), each appended where it goes; `inject`
applies it, so tests read the result as plain data, validated against the Pod schema.
Diffing whole pods would cost time in the spec's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonpatch

from contract import Broker, Plan
from contract.annotations import STATUS, STATUS_INJECTED, STATUS_WARNINGS
from contract.pod import DEFAULT_CONTAINER
from injector.webhook.annotations import PodOptions
from injector.webhook.pod.env import env_operations, env_volume
from injector.webhook.pod.init_container import init_container
from injector.webhook.pod.mounts import read_only_mount
from injector.webhook.pod.refresh_container import refresh_container
from injector.webhook.pod.volumes import secrets_volume, token_volume
from injector.webhook.settings import WebhookSettings


def inject(
    pod: dict[str, Any],
    plan: Plan,
    options: PodOptions,
    targets: Sequence[str],
    settings: WebhookSettings,
    warnings: Sequence[str],
) -> dict[str, Any]:
    """A copy of `pod` with the volumes, our containers, the mounts and the status."""
    result: dict[str, Any] = jsonpatch.apply_patch(
        pod, patch_operations(pod, plan, options, targets, settings, warnings)
    )
    return result


def patch_operations(
    pod: dict[str, Any],
    plan: Plan,
    options: PodOptions,
    targets: Sequence[str],
    settings: WebhookSettings,
    warnings: Sequence[str],
) -> list[dict[str, Any]]:
    """The JSON patch that injects: only additions, each where injection adds something.

    Built from the parts, not by diffing the old pod with a copy: a pod's spec may be over a
    MiB, and copying and diffing it whole cost more than everything else in a review.
    `warnings` (the owner's) go into the status-warnings annotation, where users see them.
    """
    spec = pod["spec"]
    ours = [init_container(plan, options.resources, settings)]
    refresh = []
    if plan.refresh_interval is not None:
        refresh.append(refresh_container(plan, options.refresh_resources, settings))
    if settings.native_sidecars:  # the refresh container starts right after ours
        ours, refresh = ours + refresh, []

    status = {STATUS: STATUS_INJECTED}
    if warnings:
        status[STATUS_WARNINGS] = "\n".join(warnings)
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if refresh and DEFAULT_CONTAINER not in (annotations or {}):
        # a plain refresh container is one more container: `kubectl logs POD` stays the app's
        status[DEFAULT_CONTAINER] = spec["containers"][0]["name"]
    operations: list[dict[str, Any]]
    if not isinstance(metadata, dict):
        operations = [_add("/metadata", {"annotations": status})]
    elif not annotations:
        operations = [_add("/metadata/annotations", status)]
    else:
        operations = [_add(f"/metadata/annotations/{_escape(k)}", v) for k, v in status.items()]

    volumes = [secrets_volume(settings.volume_size_limit)]
    if isinstance(plan.mode, Broker):
        volumes.append(token_volume())
    if plan.env:
        volumes.append(env_volume())
    operations += _append("/spec/volumes", spec.get("volumes"), volumes)

    existing = spec.get("initContainers")
    if existing and options.init_first:
        operations += [_add(f"/spec/initContainers/{i}", c) for i, c in enumerate(ours)]
    else:
        operations += _append("/spec/initContainers", existing, ours)

    chosen = set(targets)
    for index, container in enumerate(spec["containers"]):
        if container["name"] in chosen:
            path = f"/spec/containers/{index}/volumeMounts"
            mount = read_only_mount(options.mount_path)
            operations += _append(path, container.get("volumeMounts"), [mount])
    operations += env_operations(spec, plan, targets)
    operations += [_add("/spec/containers/-", c) for c in refresh]  # after the app's
    return operations


def _add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _append(path: str, existing: list[Any] | None, items: list[Any]) -> list[dict[str, Any]]:
    """Operations that append `items` to the list at `path` (absent, null or empty: set it)."""
    if not existing:
        return [_add(path, items)]
    return [_add(f"{path}/-", item) for item in items]


def _escape(key: str) -> str:
    """A key as one JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
