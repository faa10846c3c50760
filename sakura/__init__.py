"""Sakura Cloud Secret Manager: configuration, an async client and its errors.

Depends on httpx and the standard library only, so the init container can import it without
the injector's dependencies (kubernetes, starlette).
"""

from sakura.client import SakuraClient
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
from sakura.ratelimit import RateLimiter
from sakura.reader import SakuraReader, SecretInfo, Unveiled, VaultInfo
from sakura.retry import Backoff

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
