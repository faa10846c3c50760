"""What the webhook puts into a pod and the init container finds there, written once.

The webhook (injector/webhook/pod/) builds the containers, volumes and environment from these
names; the init container (sidecar/config.py) reads the same environment and token file; the
broker (injector/broker/tokens.py) accepts only tokens of `TOKEN_AUDIENCE`. See
docs/init-container.md for what each variable holds.
"""

from __future__ import annotations

INIT_CONTAINER = "sakura-secrets-init"
"""The injected init container: fetches the plan's secrets into the tmpfs, then exits."""
REFRESH_CONTAINER = "sakura-secrets-refresh"
"""The rotation sidecar (a plan with `refresh_interval`): keeps the files current; no app
container may take the name."""
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
"""kubectl's annotation naming the container `kubectl logs/exec POD` picks: set to the first app
container when a plain refresh container joins the pod's containers (unless the pod sets it)."""
INIT_COMMAND = ("python", "-m", "sidecar")
"""How the init container is started (sidecar/__main__.py)."""
REFRESH_COMMAND = (*INIT_COMMAND, "refresh")
"""How the refresh container is started: the same program, told to loop (sidecar/refresh.py)."""

ENV_PLAN = "SAKURA_SECRETS_PLAN"
"""The plan as JSON (`contract.plan.Plan.to_json`): what to fetch and which files to write."""
ENV_BROKER_URL = "SAKURA_SECRETS_BROKER_URL"
"""Broker mode: the injector's broker, `https://...` (the path `contract.broker.SECRETS_PATH`)."""
ENV_BROKER_CA = "SAKURA_SECRETS_BROKER_CA"
"""Broker mode: PEM of the CA the broker's certificate must chain to."""
ENV_TOKEN_FILE = "SAKURA_SECRETS_TOKEN_FILE"  # noqa: S105 (a variable name)
"""Broker mode: where the projected ServiceAccount token is (default `TOKEN_FILE`)."""
ENV_DEADLINE = "SAKURA_SECRETS_DEADLINE"
"""Seconds the init container keeps retrying before it gives up (default 60)."""
ENV_TERMINATION_LOG = "SAKURA_SECRETS_TERMINATION_LOG"
"""Where the one-line failure goes (default `TERMINATION_MESSAGE_PATH`; the demo sets it)."""

SECRETS_VOLUME = "sakura-secrets"
"""The memory-backed emptyDir the files are written to, mounted into the app containers."""
ENV_VOLUME = "sakura-secrets-env"
"""A plan with variables: the memory-backed emptyDir holding the env file, mounted into the init
container only; the kubelet reads it for the app containers' `fileKeyRef` variables."""
ENV_FILE_NAME = "secrets.env"
"""The env file's path inside `ENV_VOLUME` (`contract.env_file` says its format)."""
TOKEN_VOLUME = "sakura-secrets-token"  # noqa: S105 (a volume name)
"""Broker mode: the projected ServiceAccount token, mounted into the init container only."""
TOKEN_AUDIENCE = "sakura-secrets-injector"  # noqa: S105 (an audience)
"""The broker refuses tokens for any other audience, so the pod's API token is never accepted."""
TOKEN_DIRECTORY = "/var/run/secrets/sakura-secrets.io"  # noqa: S105 (a path, not a password)
"""Where `TOKEN_VOLUME` is mounted; a mount path overlapping it is refused."""
TOKEN_FILE_NAME = "token"  # noqa: S105 (a file name)
"""The token's path inside `TOKEN_VOLUME`."""
TOKEN_FILE = f"{TOKEN_DIRECTORY}/{TOKEN_FILE_NAME}"
"""The token file the init container reads."""

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
"""The init container's terminationMessagePath: its one line reaches `kubectl describe pod`."""
