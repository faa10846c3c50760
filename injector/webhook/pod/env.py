"""The pod's parts for the `env-VAR` variables: the env volume, its mount in the init container,
and each target container's `env` entries, which name the file and key, never the value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract import Plan
from contract.env_file import ENV_VOLUME_SIZE, EnvSpec
from contract.pod import ENV_FILE_NAME, ENV_VOLUME


def env_volume() -> dict[str, Any]:
    """A memory-backed emptyDir (the kubelet reads env files from emptyDir volumes only) that
    no app container mounts: the values reach the apps as variables, not as this file."""
    return {"name": ENV_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": ENV_VOLUME_SIZE}}


def env_mount(plan: Plan) -> dict[str, Any]:
    """Where the init container writes the env file."""
    return {"name": ENV_VOLUME, "mountPath": plan.env_directory}


def env_entry(variable: EnvSpec) -> dict[str, Any]:
    """The container's variable, read by the kubelet from the env file when it starts."""
    ref = {"volumeName": ENV_VOLUME, "path": ENV_FILE_NAME, "key": variable.name}
    return {"name": variable.name, "valueFrom": {"fileKeyRef": {**ref, "optional": False}}}


def env_operations(
    spec: dict[str, Any], plan: Plan, targets: Sequence[str]
) -> list[dict[str, Any]]:
    """JSON patch operations giving each target container the plan's variables: an entry the
    container already has (one `replace-env` allows) is replaced where it is, so the rest of
    its env keeps its order; the others are appended."""
    if not plan.env:
        return []
    chosen = set(targets)
    operations: list[dict[str, Any]] = []
    for index, container in enumerate(spec["containers"]):
        if container["name"] not in chosen:
            continue
        path = f"/spec/containers/{index}/env"
        existing = container.get("env") or []
        if not existing:
            entries = [env_entry(v) for v in plan.env]
            operations.append({"op": "add", "path": path, "value": entries})
            continue
        at = {e.get("name"): i for i, e in enumerate(existing) if isinstance(e, dict)}
        for variable in plan.env:
            entry = env_entry(variable)
            if variable.name in at:
                where = f"{path}/{at[variable.name]}"
                operations.append({"op": "replace", "path": where, "value": entry})
            else:
                operations.append({"op": "add", "path": f"{path}/-", "value": entry})
    return operations
