"""The volumes the webhook adds: the tmpfs for the files and, in broker mode, the token."""

from __future__ import annotations

from typing import Any

from contract.pod import SECRETS_VOLUME, TOKEN_AUDIENCE, TOKEN_FILE_NAME, TOKEN_VOLUME

TOKEN_EXPIRATION_SECONDS = 600


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
                        "path": TOKEN_FILE_NAME,
                    }
                }
            ]
        },
    }
