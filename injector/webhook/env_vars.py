"""The `env-VAR` annotations -> the plan's variables, and what the pod must allow for them.

A variable reaches the app through the kubelet (`fileKeyRef`, Kubernetes 1.35+), which reads
it from the env file the init container writes: never through the pod spec. Every refusal is
a `Denied` naming the annotation (or container) and the fix; the file form (`secret-FILE`)
is the alternative that works everywhere.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from contract import PlanError, SecretRef
from contract.annotations import (
    ENV_VAR,
    MAX_NAME,
    MOUNT_PATH,
    REFRESH_INTERVAL,
    REPLACE_ENV,
    SECRET_FILE,
    short_name,
)
from contract.env_file import EnvSpec
from contract.plan import ENV_DIRECTORY
from contract.pod import ENV_VOLUME
from injector.webhook.errors import Denied

MAX_VARIABLES = 256
"""`env-VAR` annotations a pod may have: each is an entry in every target container's env."""
MAX_VAR_LENGTH = MAX_NAME - len(short_name(ENV_VAR))
"""59: the annotation key's name part (`env-VAR`) is at most 63 characters."""
VAR_IN_KEY = re.compile(r"^(?:[A-Za-z]|[A-Za-z_][A-Za-z0-9_]*[A-Za-z0-9])\Z")
"""VAR as the annotation key holds it: a portable shell name (`contract.env_file.ENV_NAME`)
that, as every annotation key, ends with a letter or digit."""
FILE_FORM = (
    f"the file form works on every Kubernetes version: {SECRET_FILE}FILE with the same value, "
    "read by the app from the mounted file"
)
NEEDS_ENV_FILES = (
    "environment variables from the injector need Kubernetes 1.35 or later, where the kubelet "
    "reads them from the env file the init container writes (fileKeyRef, the EnvFiles "
    "feature, on by default from 1.35; 1.34's alpha reads another file format), and this "
    "cluster is older or the injector runs with --env-files=never"
)


def parse_env(ours: Mapping[str, str]) -> tuple[tuple[EnvSpec, ...], frozenset[str]]:
    """The variables `ours` (the pod's annotations under our prefix) ask for, sorted by name,
    and the VARs `replace-env` lets them replace."""
    keys = sorted(k for k in ours if k.startswith(ENV_VAR))
    if len(keys) > MAX_VARIABLES:
        raise Denied(
            f"annotation {keys[MAX_VARIABLES]}: the pod's {short_name(ENV_VAR)}VAR annotations "
            f"ask for {len(keys)} variables, more than the {MAX_VARIABLES} a pod may have; "
            "set fewer (a file can hold several secrets: template-FILE)"
        )
    specs = [EnvSpec(_var_name(key), _secret_ref(key, ours[key])) for key in keys]
    return tuple(specs), _replaced(ours.get(REPLACE_ENV), {s.name for s in specs})


def check_env(
    spec: dict[str, Any],
    targets: Sequence[str],
    env: Sequence[EnvSpec],
    replaced: frozenset[str],
    *,
    mount_path: str,
    env_files: bool,
) -> None:
    """Refuse a pod whose variables this cluster cannot give, or whose containers define them.

    `env_files`: whether the API server and kubelets take `fileKeyRef`
    (`WebhookSettings.env_files`). A VAR a target container already sets in its `env` is
    refused unless `replace-env` names it; `envFrom` (a ConfigMap's or Secret's keys) is
    not known at admission, and an `env` entry wins over it anyway.
    """
    if not env:
        return
    first = f"{ENV_VAR}{env[0].name}"
    if not env_files:
        raise Denied(f"annotation {first}: {NEEDS_ENV_FILES}; {FILE_FORM}")
    if _overlaps(mount_path, ENV_DIRECTORY):
        raise Denied(
            f"annotation {MOUNT_PATH}: {mount_path} overlaps {ENV_DIRECTORY}, where the init "
            f"container writes the env file of the {short_name(ENV_VAR)}VAR annotations; choose "
            "another directory"
        )
    if any(v.get("name") == ENV_VOLUME for v in spec.get("volumes") or ()):
        raise Denied(
            f"the pod already has a volume named {ENV_VOLUME!r}, which the injector adds for "
            f"its {short_name(ENV_VAR)}VAR annotations; rename that volume"
        )
    for container in [*(spec.get("initContainers") or ()), *spec["containers"]]:
        for mount in container.get("volumeMounts") or ():
            if mount.get("name") == ENV_VOLUME:
                raise Denied(
                    f"container {container['name']!r} mounts volume {ENV_VOLUME!r}, which the "
                    "injector adds for its init container only (the kubelet reads it for the "
                    "variables); remove that volumeMount"
                )
    _check_defined(spec, targets, {v.name for v in env} - replaced)


def check_refresh_has_files(ours: Mapping[str, str], has_files: bool) -> None:
    """Refuse `refresh-interval` on a pod with variables only: nothing of it can change."""
    if REFRESH_INTERVAL in ours and not has_files:
        raise Denied(
            f"annotation {REFRESH_INTERVAL}: this pod has only {short_name(ENV_VAR)}VAR "
            "annotations, and a running process keeps its environment, so there is nothing to "
            f"refresh; remove {REFRESH_INTERVAL}, or read the secrets that rotate as files "
            f"({SECRET_FILE}FILE)"
        )


def _check_defined(spec: dict[str, Any], targets: Sequence[str], ours: set[str]) -> None:
    chosen = set(targets)
    for container in spec["containers"]:
        if container["name"] not in chosen:
            continue
        for entry in container.get("env") or ():
            name = entry.get("name") if isinstance(entry, dict) else None
            if name in ours:
                raise Denied(
                    f"annotation {ENV_VAR}{name}: container {container['name']!r} already "
                    f"defines variable {name} in its env; remove that entry, or add {name} to "
                    f"{REPLACE_ENV} to let the secret replace it"
                )


def _var_name(key: str) -> str:
    var = key[len(ENV_VAR) :]
    if not var:
        raise Denied(f"annotation {key} names no variable; write {key}VAR, e.g. {key}DB_PASSWORD")
    if len(var) > MAX_VAR_LENGTH or not VAR_IN_KEY.match(var):
        raise Denied(
            f"annotation {key}: {var!r} is not a variable this annotation can set; write VAR "
            "with letters, digits and '_', starting with a letter or '_' and ending with a "
            f"letter or digit, at most {MAX_VAR_LENGTH} characters (Kubernetes allows "
            f"{MAX_NAME} after the '/' of an annotation key)"
        )
    return var


def _secret_ref(key: str, value: str) -> SecretRef:
    try:
        return SecretRef.parse(value)
    except PlanError as exc:
        raise Denied(f"annotation {key}: {exc}") from None


def _replaced(value: str | None, set_here: set[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise Denied(
            f"annotation {REPLACE_ENV} is empty; list the variables (VAR of {ENV_VAR}VAR) that "
            "may replace a container's own, separated by commas, or remove it"
        )
    unknown = [n for n in names if n not in set_here]
    if unknown:
        known = ", ".join(sorted(set_here)) or "none"
        raise Denied(
            f"annotation {REPLACE_ENV} names {unknown[0]!r}, which no {short_name(ENV_VAR)}VAR "
            f"annotation sets; variables set: {known}"
        )
    return frozenset(names)


def _overlaps(path: str, other: str) -> bool:
    path = posixpath.normpath(path)
    return path == other or other.startswith(f"{path}/") or path.startswith(f"{other}/")
