"""The pod annotations: every key, written once, with what it means (docs/annotations.md).

The webhook reads them (injector/webhook/annotations.py) and writes the status ones; messages
everywhere name a key through these constants, so a renamed key cannot leave a stale hint. A
key is `PREFIX` + its name; the API server allows a name (the part after the '/') of at most
`MAX_NAME` characters.
"""

from __future__ import annotations

PREFIX = "sakura-secrets.io/"
"""Every key of ours starts with this; any other key under it is refused as unknown."""
MAX_NAME = 63
"""Characters Kubernetes allows in an annotation key's name, the part after the '/'."""

# Set by the pod's owner.
INJECT = PREFIX + "inject"
"""`"true"` asks for injection, `"false"` declines it (case-insensitive)."""
VAULT_ID = PREFIX + "vault-id"
"""The 12-digit Sakura vault the secrets are read from; else the injector's default vault."""
MOUNT_PATH = PREFIX + "mount-path"
"""Absolute directory where the files appear in the app containers."""
CONTAINERS = PREFIX + "containers"
"""Comma-separated app containers that get the mount; default: all but mesh proxies."""
FILE_MODE = PREFIX + "file-mode"
"""Octal mode of every file (a `FILE_MODE_OF` key overrides it for one file)."""
RUN_AS_USER = PREFIX + "run-as-user"
"""Numeric uid that owns the files and runs the init container (never 0)."""
RUN_AS_GROUP = PREFIX + "run-as-group"
"""Numeric gid that owns the files."""
INIT_FIRST = PREFIX + "init-first"
"""`"true"`: the init container runs before the pod's own init containers; `"false"`: after."""
REFRESH_INTERVAL = PREFIX + "refresh-interval"
"""A duration (`30s`, `5m`, `1h30m`; 10s to 24h): a refresh container re-reads the latest-version
secrets that often and switches the files all at once (rotation)."""
CREDENTIALS_SECRET = PREFIX + "credentials-secret"
"""A Secret holding the pod's own Sakura API key: direct mode, no broker."""
CPU_REQUEST = PREFIX + "cpu-request"
"""CPU request of the init container (a Kubernetes quantity)."""
CPU_LIMIT = PREFIX + "cpu-limit"
"""CPU limit of the init container."""
MEMORY_REQUEST = PREFIX + "memory-request"
"""Memory request of the init container."""
MEMORY_LIMIT = PREFIX + "memory-limit"
"""Memory limit of the init container."""
REFRESH_CPU_REQUEST = PREFIX + "refresh-cpu-request"
"""CPU request of the refresh container; else `CPU_REQUEST`, else its own small default."""
REFRESH_CPU_LIMIT = PREFIX + "refresh-cpu-limit"
"""CPU limit of the refresh container; else `CPU_LIMIT`, else its own default."""
REFRESH_MEMORY_REQUEST = PREFIX + "refresh-memory-request"
"""Memory request of the refresh container; else `MEMORY_REQUEST`, else its own default."""
REFRESH_MEMORY_LIMIT = PREFIX + "refresh-memory-limit"
"""Memory limit of the refresh container; else `MEMORY_LIMIT`, else its own default."""

# Key prefixes: the rest of the key is the file's name (FILE).
SECRET_FILE = PREFIX + "secret-"
"""`secret-FILE: NAME[@VERSION][#KEY]` writes one secret's value (or one key of it) to FILE."""
TEMPLATE_FILE = PREFIX + "template-"
"""`template-FILE: <jinja2>` writes the template rendered with `secret(...)` values to FILE."""
FILE_MODE_OF = PREFIX + "file-mode-"
"""`file-mode-FILE: 0440` sets the mode of one file written by a secret- or template- key."""
ENCODING_OF = PREFIX + "encoding-"
"""`encoding-FILE: base64`: the secret- key's value is base64; FILE gets the decoded bytes."""
FILE_NAME_OF = PREFIX + "file-name-"
"""`file-name-FILE: .pgpass`: FILE is written under this name instead, one no key can spell."""

# Environment variables (docs/annotations.md, "Environment variables").
ENV_VAR = PREFIX + "env-"
"""`env-VAR: NAME[@VERSION][#KEY]` gives the target containers variable VAR with that value,
through the env file the init container writes (`fileKeyRef`, Kubernetes 1.35+)."""
REPLACE_ENV = PREFIX + "replace-env"
"""Comma-separated VARs a target container already defines in its `env` that the `env-VAR`
annotation may replace; without it such a VAR is refused."""

# Written by the injector; a pod's owner must not set them.
STATUS = PREFIX + "status"
"""Marks an injected pod (`STATUS_INJECTED`): a reinvocation or a copied pod is left alone."""
STATUS_INJECTED = "injected"
"""The one value of `STATUS`."""
STATUS_WARNINGS = PREFIX + "status-warnings"
"""The admission warnings about the pod, one a line, where its owner sees them (`kubectl
describe pod`); the admission answer's warnings reach only whoever created the pod, for a
Deployment the ReplicaSet controller."""

FIXED = (
    INJECT,
    VAULT_ID,
    MOUNT_PATH,
    CONTAINERS,
    FILE_MODE,
    RUN_AS_USER,
    RUN_AS_GROUP,
    INIT_FIRST,
    REFRESH_INTERVAL,
    CREDENTIALS_SECRET,
    CPU_REQUEST,
    CPU_LIMIT,
    MEMORY_REQUEST,
    MEMORY_LIMIT,
    REFRESH_CPU_REQUEST,
    REFRESH_CPU_LIMIT,
    REFRESH_MEMORY_REQUEST,
    REFRESH_MEMORY_LIMIT,
    REPLACE_ENV,
    STATUS_WARNINGS,
    STATUS,
)
"""Every key without a FILE part, the injector's own two last (messages list the others)."""
PER_FILE: tuple[str, ...] = (SECRET_FILE, TEMPLATE_FILE, FILE_MODE_OF)
"""The key prefixes followed by a file's name."""
PER_FILE += (ENCODING_OF, FILE_NAME_OF)  # FILE of a secret-/template- key, not the disk name
PER_VARIABLE = (ENV_VAR,)
"""The key prefixes followed by an environment variable's name."""


def short_name(key: str) -> str:
    """The key without `PREFIX`: what `MAX_NAME` bounds and what a message may shorten to."""
    return key.removeprefix(PREFIX)
