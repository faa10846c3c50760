"""Direct mode: the pod's own Sakura credentials (annotation credentials-secret), no broker.

Each distinct secret of the plan is read once, concurrently, through the Sakura client, whose
rate limiter and retries keep us under the quota; the first failure cancels the rest.
"""

from __future__ import annotations

import asyncio

import httpx

from contract import Plan, SecretVersion
from contract.annotations import CREDENTIALS_SECRET, VAULT_ID
from contract.broker import FetchedSecret
from contract.pod import ENV_DEADLINE
from sakura import (
    NotFound,
    RateLimiter,
    SakuraClient,
    SakuraConfig,
    SakuraConfigError,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)
from sidecar.errors import (
    BadAnswer,
    ConfigError,
    CredentialsRejected,
    FetchError,
    SecretNotFound,
    StillThrottled,
    Unreachable,
)
from sidecar.fetched import Values

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
            f"Sakura did not answer within {deadline:g}s ({ENV_DEADLINE}) while "
            f"reading {', '.join(str(s) for s in wanted)} from vault {vault_id}"
        )
    return {s: task.result() for s, task in zip(wanted, tasks, strict=True)}


async def _one(
    client: SakuraClient, vault_id: str, wanted: SecretVersion, deadline: float
) -> FetchedSecret:
    try:
        unveiled = await client.unveil(vault_id, wanted.name, wanted.version)
    except SakuraError as exc:
        raise _mapped(exc, vault_id, wanted, deadline) from None
    if wanted.version is not None and unveiled.version != wanted.version:
        raise BadAnswer(
            f"Sakura returned version {unveiled.version} of secret {wanted.name!r} "
            f"when version {wanted.version} was asked for"
        )
    return FetchedSecret(wanted.name, wanted.version, unveiled.version, unveiled.value)


def _mapped(exc: SakuraError, vault_id: str, wanted: SecretVersion, deadline: float) -> FetchError:
    """The client's message names the operation; add what the pod's owner can do about it."""
    what = exc.message
    if repr(wanted.name) not in what and wanted.name not in what:
        what = f"reading secret {str(wanted)!r} from vault {vault_id}: {what}"
    if isinstance(exc, NotFound):
        fixes = {
            "vault": f"check the {VAULT_ID} annotation (or the injector's "
            "default vault) and that the key may see the vault",
            "secret": "check the name (it is case-sensitive) or create the secret",
            "version": f"pin an existing version, or drop '@{wanted.version}' to read the latest",
        }
        return SecretNotFound(f"{what}; {fixes[exc.kind]}")
    if isinstance(exc, Unauthorized):
        return CredentialsRejected(
            f"{what}; the credentials come from the Secret named by the "
            f"{CREDENTIALS_SECRET} annotation"
        )
    if isinstance(exc, Throttled):
        return StillThrottled(
            f"{what}; the pod restarts and tries again; raise {ENV_DEADLINE} "
            f"(now {deadline:g}s) or use broker mode so pods share one cache"
        )
    if isinstance(exc, Unavailable):
        return Unreachable(
            f"{what}; check SAKURA_ENDPOINTS_SECRETMANAGER/SAKURA_ZONE and Sakura's status"
        )
    if isinstance(exc, SakuraConfigError):
        return ConfigError(what)
    return BadAnswer(what)
