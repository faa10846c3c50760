"""Old pod + plan + settings -> new pod. Pure: the JSON patch is computed from the two.

Building a whole new pod and diffing it (rather than hand-writing patch operations) keeps
the result easy to test: the expected pod is plain data, validated against the Pod schema.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from injector.annotations import STATUS, STATUS_INJECTED, PodOptions
from injector.checks import Denied
from injector.pod.init_container import INIT_CONTAINER, init_container
from injector.pod.mounts import check_mount_path, read_only_mount, target_containers
from injector.pod.volumes import SECRETS_VOLUME, TOKEN_VOLUME, secrets_volume, token_volume
from injector.settings import WebhookSettings
from plan import Plan


def fit(spec: dict[str, Any], options: PodOptions) -> tuple[str, ...]:
    """The target containers, once the pod is known to have room for what we add."""
    targets = target_containers(spec, options.containers)
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
                    "sakura-secrets.io/containers)"
                )
    return targets


def inject(
    pod: dict[str, Any],
    plan: Plan,
    options: PodOptions,
    targets: Sequence[str],
    settings: WebhookSettings,
) -> dict[str, Any]:
    """A copy of `pod` with the volumes, the init container, the mounts and the status."""
    new = copy.deepcopy(pod)
    metadata = new.get("metadata") or {}
    new["metadata"] = metadata
    metadata["annotations"] = {**(metadata.get("annotations") or {}), STATUS: STATUS_INJECTED}

    spec = new["spec"]
    volumes = [*(spec.get("volumes") or []), secrets_volume(settings.volume_size_limit)]
    if plan.mode == "broker":
        volumes.append(token_volume())
    spec["volumes"] = volumes

    ours = init_container(plan, options, settings)
    existing = list(spec.get("initContainers") or [])
    spec["initContainers"] = [ours, *existing] if options.init_first else [*existing, ours]

    chosen = set(targets)
    for container in spec["containers"]:
        if container["name"] in chosen:
            container["volumeMounts"] = [
                *(container.get("volumeMounts") or []),
                read_only_mount(options.mount_path),
            ]
    return new
