"""Whether pods may get `env-VAR` variables: `--env-files=auto|always|never`.

The kubelet reads a `fileKeyRef` variable from the env file the init container writes; that
is on by default from Kubernetes 1.35 (EnvFiles beta). An older API server drops the field it
does not know, and 1.34's alpha kubelet reads another file format (unquoted `NAME=value`), so
`auto` (the default) allows them from 1.35 only, from the very version the native-sidecars
watch reads (`NativeSidecars`, at start-up and every 10 minutes): one read answers both. A
version not read yet means no variables. `always` is for a cluster the operator knows takes
them; `never` refuses them everywhere. The webhook's core only ever sees the answer
(`WebhookSettings.env_files`); docs/annotations.md explains the variables.
"""

from __future__ import annotations

from injector.operations.native_sidecars import MODES, NativeSidecars, release_of

__all__ = ["FIRST_ENV_FILES", "MODES", "EnvFiles", "env_files_from_version"]

FIRST_ENV_FILES = (1, 35)
"""The first Kubernetes version whose kubelets and API server take `fileKeyRef` by default,
with the single-quoted env file format `contract.env_file` writes."""


def env_files_from_version(major: str, minor: str) -> bool:
    """True from 1.35 on (managed clusters' "35+" too); ValueError when not MAJOR.MINOR."""
    return release_of(major, minor) >= FIRST_ENV_FILES


class EnvFiles:
    """`auto`: the answer from the version the watch read last; False until it read one."""

    def __init__(self, watch: NativeSidecars) -> None:
        self.watch = watch

    def __call__(self) -> bool:
        release = self.watch.release
        return release is not None and release >= FIRST_ENV_FILES
