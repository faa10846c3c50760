"""Old pod + plan + settings -> the JSON patch that injects, and the new pod it makes. Pure.

The patch is built from the parts injection adds (volumes, init container, mounts, status),
each appended where it goes; `inject` applies it, so tests read the result as plain data,
validated against the Pod schema. Diffing whole pods would cost time in the spec's size.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import jsonpatch

from contract import Plan
from contract.annotations import CONTAINERS, STATUS, STATUS_INJECTED, STATUS_WARNINGS
from contract.pod import INIT_CONTAINER, SECRETS_VOLUME, TOKEN_VOLUME
from injector.webhook.annotations import PodOptions
from injector.webhook.checks import Denied
from injector.webhook.pod.init_container import init_container
from injector.webhook.pod.mounts import check_mount_path, read_only_mount, target_containers
from injector.webhook.pod.volumes import secrets_volume, token_volume
from injector.webhook.settings import WebhookSettings


def fit(spec: dict[str, Any], options: PodOptions, proxies: Collection[str]) -> tuple[str, ...]:
    """The target containers, once the pod is known to have room for what we add.

    Without a `containers` annotation these are the app containers except the mesh proxies
    (`proxies`, e.g. istio-proxy, which a mesh's webhook may have added before ours): they
    never read the files, and their own runAsUser would otherwise decide the files' owner.
    """
    targets = target_containers(spec, options.containers)
    if options.containers is None:
        apps = tuple(name for name in targets if name not in proxies)
        if not apps:
            raise Denied(
                f"the pod's only containers are mesh proxies ({', '.join(targets)}); add the "
                f"app container, or name the proxy in {CONTAINERS}"
            )
        targets = apps
    check_mount_path(spec, targets, options.mount_path)
    volumes = {v.get("name") for v in spec.get("volumes") or ()}
    for name in (SECRETS_VOLUME, TOKEN_VOLUME):
        if name in volumes:
            raise Denied(
                f"the pod already has a volume named {name!r}, which the injector adds; "
                "rename that volume"
            )
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    if any(c.get("name") == INIT_CONTAINER for c in containers):
        raise Denied(
            f"the pod already has a container named {INIT_CONTAINER!r}, which the injector adds; "
            "rename that container"
        )
    for container in containers:
        for mount in container.get("volumeMounts") or ():
            if mount.get("name") in (SECRETS_VOLUME, TOKEN_VOLUME):
                # the volume appears only with the patch: the mount would get our token (or a
                # writable view of the files) into a container the injector did not choose
                raise Denied(
                    f"container {container['name']!r} mounts volume {mount['name']!r}, which "
                    "the injector adds for its own init container; remove that volumeMount "
                    "(app containers get the files read-only through "
                    f"{CONTAINERS})"
                )
    return targets


def inject(
    pod: dict[str, Any],
    plan: Plan,
    options: PodOptions,
    targets: Sequence[str],
    settings: WebhookSettings,
    warnings: Sequence[str],
) -> dict[str, Any]:
    """A copy of `pod` with the volumes, the init container, the mounts and the status."""
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
    status = {STATUS: STATUS_INJECTED}
    if warnings:
        status[STATUS_WARNINGS] = "\n".join(warnings)
    metadata = pod.get("metadata")
    operations: list[dict[str, Any]]
    if not isinstance(metadata, dict):
        operations = [_add("/metadata", {"annotations": status})]
    elif not metadata.get("annotations"):
        operations = [_add("/metadata/annotations", status)]
    else:
        operations = [_add(f"/metadata/annotations/{_escape(k)}", v) for k, v in status.items()]

    volumes = [secrets_volume(settings.volume_size_limit)]
    if plan.mode == "broker":
        volumes.append(token_volume())
    operations += _append("/spec/volumes", spec.get("volumes"), volumes)

    ours = init_container(plan, options, settings)
    existing = spec.get("initContainers")
    if existing and options.init_first:
        operations.append(_add("/spec/initContainers/0", ours))
    else:
        operations += _append("/spec/initContainers", existing, [ours])

    chosen = set(targets)
    for index, container in enumerate(spec["containers"]):
        if container["name"] in chosen:
            path = f"/spec/containers/{index}/volumeMounts"
            mount = read_only_mount(options.mount_path)
            operations += _append(path, container.get("volumeMounts"), [mount])
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
