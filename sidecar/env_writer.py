"""From the plan's variables and the fetched values to the env file the kubelet reads.

Written once, by the init container, before any app container starts: the kubelet reads it
when each container starts (`fileKeyRef`), so a refresh could not change a running process's
environment and does not write it. Every value is checked against the file's format first
(`contract.env_file`); one it cannot hold fails the init container, naming the variable and
the secret, never the value, and nothing is written.
"""

from __future__ import annotations

from contract import Plan
from contract.annotations import ENV_VAR, SECRET_FILE
from contract.env_file import encode, refusal
from contract.pod import ENV_FILE_NAME
from sidecar.errors import EnvValueRefused
from sidecar.fetched import Values
from sidecar.writer import FileContent, replace_file, value_of

ENV_FILE_MODE = 0o400
"""Only the owner (and the kubelet, as root) reads it; no app container mounts its volume."""


def contents(plan: Plan, values: Values) -> FileContent | None:
    """The env file, or None for a plan without variables; raises EnvValueRefused or BadKey."""
    if not plan.env:
        return None
    pairs = []
    for variable in plan.env:
        value = value_of(variable.secret, values)
        why = refusal(variable.name, value)
        if why is not None:
            raise EnvValueRefused(
                f"variable {variable.name} ({ENV_VAR}{variable.name}): the value of secret "
                f"{str(variable.secret)!r} {why}; read it as a file instead "
                f"({SECRET_FILE}FILE holds any value)"
            )
        pairs.append((variable.name, value))
    try:
        data = encode(pairs)
    except ValueError as exc:  # the whole file too large: its message names no value
        raise EnvValueRefused(
            f"{exc}; set fewer {ENV_VAR}VAR variables, or read the large values as files"
        ) from None
    return FileContent(ENV_FILE_NAME, ENV_FILE_MODE, data)


def write(plan: Plan, item: FileContent) -> None:
    """Replace the env file whole (a temporary file, then one rename); raises WriteFailed."""
    replace_file(plan.env_directory, item, uid=plan.uid, gid=plan.gid)
