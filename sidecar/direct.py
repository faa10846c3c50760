"""Direct mode: the pod's own Sakura credentials (annotation credentials-secret), no broker.

Each distinct secret of the plan is read once, concurrently, through the Sakura client, whose
rate limiter and retries keep us under the quota; the first failure cancels the rest.
"""

from __future__ import annotations

import asyncio

import httpx

from plan import Plan, SecretVersion
from sakura import (
    NotFound,
    RateLimiter,
    SakuraClient,
    SakuraConfig,
    SakuraConfigError,
    SakuraError,
    Unauthorized,
    Unavailable,
)
from sakura import Throttled as SakuraThrottled
from sidecar.errors import (
    BadAnswer,
    ConfigError,
    FetchError,
    Forbidden,
    SecretNotFound,
    Throttled,
    Unreachable,
)
from sidecar.fetched import Fetched, Values

# Past the client's own deadline, a last guard so the init container never hangs.
GRACE = 5.0
# One pod reads each of its secrets exactly once, so pacing them inside the pod saves no quota;
# it only delays the start. Larger plans are still paced at the client's rate after this burst.
MAX_BURST = 20


async def fetch(
    plan: Plan,
    config: SakuraConfig,
    *,
    deadline: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Values:
    """Read every `plan.secrets()` entry; raise the FetchError of the first that fails."""
    assert plan.vault_id is not None
    vault_id = plan.vault_id
    wanted = plan.secrets()
    limiter = RateLimiter(burst=max(1, min(len(wanted), MAX_BURST)))
    async with SakuraClient(
        config, limiter=limiter, deadline=deadline, transport=transport
    ) as client:
        tasks = [asyncio.create_task(_one(client, vault_id, s, deadline)) for s in wanted]
        try:
            _, pending = await asyncio.wait(
                tasks, timeout=deadline + GRACE, return_when=asyncio.FIRST_EXCEPTION
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:  # in plan order, so the reported secret is predictable
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
    if pending:
        raise Unreachable(
            f"Sakura did not answer within {deadline:g}s (SAKURA_SECRETS_DEADLINE) while "
            f"reading {', '.join(str(s) for s in wanted)} from vault {vault_id}"
        )
    return {s: task.result() for s, task in zip(wanted, tasks, strict=True)}


async def _one(
    client: SakuraClient, vault_id: str, wanted: SecretVersion, deadline: float
) -> Fetched:
    try:
        unveiled = await client.unveil(vault_id, wanted.name, wanted.version)
    except SakuraError as exc:
        raise _mapped(exc, vault_id, wanted, deadline) from None
    if wanted.version is not None and unveiled.version != wanted.version:
        raise BadAnswer(
            f"Sakura returned version {unveiled.version} of secret {wanted.name!r} "
            f"when version {wanted.version} was asked for"
        )
    return Fetched(wanted, unveiled.version, unveiled.value)


def _mapped(exc: SakuraError, vault_id: str, wanted: SecretVersion, deadline: float) -> FetchError:
    where = f"secret {str(wanted)!r} in vault {vault_id}"
    if isinstance(exc, NotFound):
        fixes = {
            "vault": f"vault {vault_id} does not exist or the key cannot see it; "
            "check the sakura-secrets.io/vault-id annotation",
            "secret": f"secret {wanted.name!r} does not exist in vault {vault_id}; "
            "check the name (case-sensitive) or create it",
            "version": f"secret {wanted.name!r} has no version {wanted.version} in vault "
            f"{vault_id}; pin an existing version or drop '@{wanted.version}' for the latest",
        }
        return SecretNotFound(f"{fixes[exc.kind]} ({exc.message})")
    if isinstance(exc, Unauthorized):
        return Forbidden(
            f"Sakura refused the credentials from credentials-secret reading {where}: "
            f"{exc.message}; check SAKURA_ACCESS_TOKEN/SAKURA_ACCESS_TOKEN_SECRET in that "
            "Secret and the key's permission on the vault"
        )
    if isinstance(exc, SakuraThrottled):
        return Throttled(
            f"Sakura still throttled reading {where} after {deadline:g}s "
            f"(SAKURA_SECRETS_DEADLINE): {exc.message}; the pod restarts and tries again, "
            "or use broker mode so pods share one cache"
        )
    if isinstance(exc, Unavailable):
        return Unreachable(
            f"Sakura unavailable reading {where}: {exc.message}; check "
            "SAKURA_ENDPOINTS_SECRETMANAGER/SAKURA_ZONE and Sakura's status"
        )
    if isinstance(exc, SakuraConfigError):
        return ConfigError(f"{exc.message} (reading {where})")
    return BadAnswer(f"Sakura failed reading {where}: {exc.message}")
