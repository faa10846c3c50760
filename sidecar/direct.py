"""Direct mode: the pod's own Sakura credentials (annotation credentials-secret), no broker.

Each distinct secret of the plan is read once, concurrently, through the Sakura client, whose
rate limiter and retries keep us under the quota; the first failure cancels the rest. A refresh
(`changes`) lists the vault once and unveils only versions newer than those held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

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
    wanted = plan.secrets()
    async with _client(config, len(wanted), deadline, transport) as client:
        return await _read_all(client, plan.vault_id, wanted, deadline)


async def changes(
    plan: Plan,
    config: SakuraConfig,
    held: Mapping[str, int],
    *,
    deadline: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Values:
    """A refresh: of the names `held` at the latest, the values of those with a newer version.

    One listing of the vault gives every secret's latest version; only a version newer than
    the one held is unveiled (a lower one, a secret deleted and created again, is not taken:
    the files never go back to an older version).
    """
    vault_id = plan.vault_id
    async with _client(config, len(held) + 1, deadline, transport) as client:
        try:
            listing = await client.list_secrets(vault_id)
        except SakuraError as exc:
            raise _mapped(exc, vault_id, None, deadline) from None
        latest = {info.name: info.latest_version for info in listing}
        gone = sorted(set(held) - set(latest))
        if gone:
            raise SecretNotFound(
                f"secret {gone[0]!r} is no longer in vault {vault_id} (listing its secrets); "
                f"the files keep version {held[gone[0]]}; create the secret again or change "
                "the pod's annotations"
            )
        newer = tuple(SecretVersion(n, latest[n]) for n in sorted(held) if latest[n] > held[n])
        read = await _read_all(client, vault_id, newer, deadline)
    return {
        SecretVersion(f.name): FetchedSecret(f.name, None, f.version, f.value)
        for f in read.values()
    }


def _client(
    config: SakuraConfig, calls: int, deadline: float, transport: httpx.AsyncBaseTransport | None
) -> SakuraClient:
    limiter = RateLimiter(burst=max(1, min(calls, MAX_BURST)))
    return SakuraClient(config, limiter=limiter, deadline=deadline, transport=transport)


async def _read_all(
    client: SakuraClient, vault_id: str, wanted: tuple[SecretVersion, ...], deadline: float
) -> Values:
    """Unveil each of `wanted` concurrently; the first failure cancels the rest."""
    if not wanted:
        return {}
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


def _mapped(
    exc: SakuraError, vault_id: str, wanted: SecretVersion | None, deadline: float
) -> FetchError:
    """The client's message names the operation; add what the pod's owner can do about it.
    `wanted` is None for the listing of a refresh (which names the vault)."""
    what = exc.message
    if wanted is not None and repr(wanted.name) not in what and wanted.name not in what:
        what = f"reading secret {str(wanted)!r} from vault {vault_id}: {what}"
    if isinstance(exc, NotFound):
        pinned = None if wanted is None else wanted.version
        fixes = {
            "vault": f"check the {VAULT_ID} annotation (or the injector's "
            "default vault) and that the key may see the vault",
            "secret": "check the name (it is case-sensitive) or create the secret",
            "version": f"pin an existing version, or drop '@{pinned}' to read the latest",
        }
        return SecretNotFound(f"{what}; {fixes[exc.kind]}")
    if isinstance(exc, Unauthorized):
        return CredentialsRejected(
            f"{what}; the credentials come from the Secret named by the "
            f"{CREDENTIALS_SECRET} annotation"
        )
    if isinstance(exc, Throttled):
        return StillThrottled(
            f"{what}; it is tried again later; raise {ENV_DEADLINE} "
            f"(now {deadline:g}s) or use broker mode so pods share one cache"
        )
    if isinstance(exc, Unavailable):
        return Unreachable(
            f"{what}; check SAKURA_ENDPOINTS_SECRETMANAGER/SAKURA_ZONE and Sakura's status"
        )
    if isinstance(exc, SakuraConfigError):
        return ConfigError(what)
    return BadAnswer(what)
