"""The env file the init container writes and the kubelet reads for `fileKeyRef` variables.

The format is the kubelet's (Kubernetes 1.35+, EnvFiles beta, kubernetes/kubernetes#134414;
the reader is pkg/kubelet/util/env/env_util.go `ParseEnv`): one `NAME='value'` a variable,
the value between single quotes taken literally (no escapes, no expansion), a newline inside
the quotes kept. So a value holding a single quote cannot be written at all; the reader is a
`bufio.Scanner`, which drops a CR before each LF and refuses a line of 64 KiB or more; and
Linux refuses to start a process with one `NAME=value` over 128 KiB (MAX_ARG_STRLEN). The
1.34 alpha reader took another format (unquoted `NAME=value`), so 1.34 is not supported.
Both the webhook (names) and the init container (values) check against these rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.errors import PlanError

if TYPE_CHECKING:  # contract.plan imports this module
    from contract.plan import SecretRef

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
"""A variable's name: a portable shell name (letters, digits, '_'; not starting with a digit),
which every program can read and which the kubelet accepts as a key (printable ASCII, no
'='); the `env-VAR` annotation narrows it further (its key must end with a letter or digit)."""
MAX_NAME_LENGTH = 128
"""The kubelet's limit on a key of the env file (FileKeySelector.key)."""
MAX_LINE_BYTES = 64 * 1024 - 1
"""The longest line the kubelet's reader takes: bufio.Scanner's token limit is 64 KiB with
the newline."""
MAX_VARIABLE_BYTES = 128 * 1024 - 1
"""`NAME=value` at most this long: Linux's MAX_ARG_STRLEN (128 KiB) with the NUL."""
MAX_FILE_BYTES = 1024 * 1024
"""The whole file; the env volume's sizeLimit (`ENV_VOLUME_SIZE`) leaves room above it."""
ENV_VOLUME_SIZE = "2Mi"


@dataclass(frozen=True, order=True)
class EnvSpec:
    """One environment variable of the target containers: its name and the secret it holds."""

    name: str
    secret: SecretRef

    def __post_init__(self) -> None:
        check_env_name(self.name)


def check_env_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not ENV_NAME.match(name):
        raise PlanError(
            f"variable name {name!r} is not a portable environment variable name; use letters, "
            f"digits and '_', not starting with a digit (at most {MAX_NAME_LENGTH} characters)"
        )


def refusal(name: str, value: str) -> str | None:
    """Why `value` cannot be variable `name` in the env file, or None when it can.

    The reason names what is wrong, never the value (it is a secret).
    """
    try:
        size = len(name.encode()) + 1 + len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    if "'" in value:
        return (
            "contains a single quote ('), which the kubelet's env file cannot hold "
            "(values are written between single quotes, without escapes)"
        )
    if "\0" in value:
        return "contains a NUL byte, which no environment variable can hold"
    if "\r\n" in value:
        return "contains a CR LF line ending, whose CR the kubelet's reader drops"
    if size > MAX_VARIABLE_BYTES:
        return (
            f"makes NAME=value {size} bytes, more than the {MAX_VARIABLE_BYTES} Linux allows one "
            "environment variable"
        )
    lines = f"{name}='{value}'".split("\n")
    longest = max(len(line.encode()) for line in lines)
    if longest > MAX_LINE_BYTES:
        return (
            f"has a line of {longest} bytes, more than the {MAX_LINE_BYTES} the kubelet's "
            "env file reader takes"
        )
    return None


def encode(variables: Sequence[tuple[str, str]]) -> bytes:
    """The file: `NAME='value'` lines in the given order; ValueError when one cannot be held
    (`refusal`) or the file would be over `MAX_FILE_BYTES` (the message names no value)."""
    lines = []
    for name, value in variables:
        check_env_name(name)
        why = refusal(name, value)
        if why is not None:
            raise ValueError(f"variable {name}: the value {why}")
        lines.append(f"{name}='{value}'\n")
    data = "".join(lines).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(
            f"the env file would have {len(data)} bytes, more than {MAX_FILE_BYTES} (1 MiB)"
        )
    return data
