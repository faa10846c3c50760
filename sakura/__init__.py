"""Sakura Cloud Secret Manager: configuration, an async client and its errors.

Depends on httpx and the standard library only, so the init container can import it without
the injector's dependencies (kubernetes, starlette).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sakura.config import SakuraConfig
from sakura.errors import (
    BadResponse,
    Crowded,
    NotFound,
    Rejected,
    SakuraConfigError,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)
from sakura.jsonkey import KeyExtractionError, extract_key
from sakura.retry import Backoff

if TYPE_CHECKING:
    from sakura.client import SakuraClient
    from sakura.ratelimit import RateLimiter
    from sakura.reader import SakuraReader, SecretInfo, Unveiled, VaultInfo

_LAZY = {
    "SakuraClient": "sakura.client",
    "RateLimiter": "sakura.ratelimit",
    "SakuraReader": "sakura.reader",
    "SecretInfo": "sakura.reader",
    "Unveiled": "sakura.reader",
    "VaultInfo": "sakura.reader",
}
"""Loaded on first use (PEP 562): the client and its rate limiter import asyncio, which the
init container in broker mode never runs (docs/init-container.md, "Start-up cost"), and every
`from sakura import ...` would otherwise pay for them."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sakura' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Backoff",
    "BadResponse",
    "Crowded",
    "KeyExtractionError",
    "NotFound",
    "RateLimiter",
    "Rejected",
    "SakuraClient",
    "SakuraConfig",
    "SakuraConfigError",
    "SakuraError",
    "SakuraReader",
    "SecretInfo",
    "Throttled",
    "Unauthorized",
    "Unavailable",
    "Unveiled",
    "VaultInfo",
    "extract_key",
]
