"""The volumes the webhook adds: the tmpfs for the files and, in broker mode, the token."""

from __future__ import annotations

from typing import Any

SECRETS_VOLUME = "sakura-secrets"
TOKEN_VOLUME = "sakura-secrets-token"  # noqa: S105 (a volume name)
TOKEN_AUDIENCE = "sakura-secrets-injector"  # noqa: S105 (an audience)
"""The broker refuses tokens for any other audience, so the pod's API token is never accepted."""
TOKEN_EXPIRATION_SECONDS = 600
TOKEN_DIRECTORY = "/var/run/secrets/sakura-secrets.io"  # noqa: S105 (a path, not a password)
TOKEN_PATH = "token"  # noqa: S105 (a file name)
TOKEN_FILE = f"{TOKEN_DIRECTORY}/{TOKEN_PATH}"


def secrets_volume(size_limit: str) -> dict[str, Any]:
    """A memory-backed emptyDir: the files never touch the node's disk and die with the pod."""
    return {"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size_limit}}


def token_volume() -> dict[str, Any]:
    """A short-lived projected ServiceAccount token that only the broker accepts."""
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": TOKEN_AUDIENCE,
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                        "path": TOKEN_PATH,
                    }
                }
            ]
        },
    }
