"""What each HTTP error status from Sakura means: the error a user can act on.

Kept apart from the request loop in client.py, which decides whether to retry; this decides
what to tell the user (which credential to check, which vault or secret is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sakura.errors import (
    NotFound,
    NotFoundKind,
    Rejected,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)

if TYPE_CHECKING:
    from sakura.reader import SecretInfo
from sakura.reader import SecretInfo


def error_for(
    status: int,
    what: str,
    text: str,
    retry_after: float | None,
    missing: tuple[NotFoundKind, str],
    vault_id: str | None,
    hint: str = "check SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET",
) -> SakuraError:
    """Map an HTTP error status to the error a user can act on."""
    said = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    error: SakuraError
    if status == 401:
        error = Unauthorized(
            f"{what}: Sakura refused the credentials ({said}); {hint}",
            status=status,
        )
    elif status == 403:
        error = Unauthorized(
            f"{what}: the access token may not do this ({said}); grant it Secret Manager access",
            status=status,
        )
    elif status == 404:
        kind, name = missing
        lowered = text.lower()
        if vault_id is not None and "vault" in lowered and "secret" not in lowered:
            kind, name = "vault", vault_id
        subject = f"vault {name}" if kind == "vault" else f"secret {name!r}"
        where = "" if kind == "vault" or vault_id is None else f" in vault {vault_id}"
        error = NotFound(f"{what}: {subject} not found{where} ({said})", kind=kind, name=name)
    elif status == 429:
        wait = "" if retry_after is None else f"; Sakura asks to retry after {retry_after:g}s"
        error = Throttled(
            f"{what}: Sakura is throttling requests ({said}){wait}",
            retry_after=retry_after,
            status=status,
        )
    elif status >= 500:
        error = Unavailable(f"{what}: Sakura failed ({said})", status=status)
    else:
        error = Rejected(f"{what}: Sakura rejected the request ({said})", status=status)
    error.sakura_text = text
    return error


def missing_version(
    exc: NotFound, vault_id: str, name: str, version: int, secrets: list[SecretInfo] | None
) -> NotFound:
    """A pinned read's 404, told apart by the vault's listing (None: it could not be read)."""
    if secrets is None:
        return NotFound(
            f"secret {name!r} version {version} not found in vault {vault_id} "
            f"(or the secret does not exist): {exc.sakura_text}",
            kind="version",
            name=f"{name}@{version}",
        )
    latest = next((s.latest_version for s in secrets if s.name == name), None)
    if latest is None:
        return exc
    return NotFound(
        f"secret {name!r} has no version {version} in vault {vault_id} "
        f"(latest is {latest}): {exc.sakura_text}",
        kind="version",
        name=f"{name}@{version}",
    )
