"""Direct mode: the pod's own Sakura credentials (annotation credentials-secret), no broker.

Each distinct secret of the plan is read once, all at the same time on a few threads, through
the Sakura client's loop, whose rate limiter and retries keep us under the quota; the first
failure ends the fetch (the other threads are daemons: they never hold the exit). A refresh
(`changes`) lists the vault once and unveils only versions newer than those held. An API key
reads with the blocking reader (no event loop: the init container's start-up cost,
docs/init-container.md); a service principal with the async client on a loop of its own
thread (sidecar/loop_reads.py), whose tokens are renewed there.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Protocol

import httpx

from contract import Plan, SecretVersion
from contract.annotations import CREDENTIALS_SECRET, VAULT_ID
from contract.broker import FetchedSecret
from contract.pod import ENV_DEADLINE
from sakura import (
    NotFound,
    SakuraConfig,
    SakuraConfigError,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)
from sakura.ratelimit import RateLimiter
from sakura.reader import SecretInfo, Unveiled
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
# Reads at once: a plan's secrets wait about one round trip, not one per secret.
MAX_THREADS = 8


class Reads(Protocol):
    """The two reads, blocking and safe to call from several threads."""

    def unveil(self, vault_id: str, name: str, version: int | None = None) -> Unveiled: ...

    def list_secrets(self, vault_id: str) -> list[SecretInfo]: ...

    def close(self) -> None: ...


def fetch(
    plan: Plan,
    config: SakuraConfig,
    *,
    deadline: float,
    transport: httpx.BaseTransport | None = None,
) -> Values:
    """Read every `plan.secrets()` entry; raise the FetchError of the first that fails."""
    wanted = plan.secrets()
    reader = _reader(config, len(wanted), deadline, transport)
    try:
        return _read_all(reader, plan.vault_id, wanted, deadline)
    finally:
        reader.close()


def changes(
    plan: Plan,
    config: SakuraConfig,
    held: Mapping[str, int],
    *,
    deadline: float,
    transport: httpx.BaseTransport | None = None,
) -> Values:
    """A refresh: of the names `held` at the latest, the values of those with a newer version.

    One listing of the vault gives every secret's latest version; only a version newer than
    the one held is unveiled (a lower one, a secret deleted and created again, is not taken:
    the files never go back to an older version).
    """
    vault_id = plan.vault_id
    reader = _reader(config, len(held) + 1, deadline, transport)
    try:
        try:
            listing = reader.list_secrets(vault_id)
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
        read = _read_all(reader, vault_id, newer, deadline)
    finally:
        reader.close()
    return {
        SecretVersion(f.name): FetchedSecret(f.name, None, f.version, f.value)
        for f in read.values()
    }


def _reader(
    config: SakuraConfig, calls: int, deadline: float, transport: httpx.BaseTransport | None
) -> Reads:
    limiter = RateLimiter(burst=max(1, min(calls, MAX_BURST)))
    if config.principal is None:
        from sakura.sync_reader import SyncReader

        return SyncReader(config, limiter=limiter, deadline=deadline, transport=transport)
    from sidecar.loop_reads import LoopReads

    return LoopReads(config, limiter=limiter, deadline=deadline)


def _read_all(
    reader: Reads, vault_id: str, wanted: tuple[SecretVersion, ...], deadline: float
) -> Values:
    """Unveil each of `wanted` at once; the first failure ends the fetch."""
    if not wanted:
        return {}
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(wanted)):
        todo.put(index)
    outcomes: queue.SimpleQueue[tuple[int, FetchedSecret | BaseException]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            try:
                outcomes.put((index, _one(reader, vault_id, wanted[index], deadline)))
            except BaseException as exc:  # the caller raises it, in its own thread
                outcomes.put((index, exc))

    for _ in range(min(len(wanted), MAX_THREADS)):
        threading.Thread(target=work, name="sakura-read", daemon=True).start()
    got: dict[int, FetchedSecret] = {}
    give_up_at = time.monotonic() + deadline + GRACE
    try:
        while len(got) < len(wanted):
            try:
                index, outcome = outcomes.get(timeout=max(0.0, give_up_at - time.monotonic()))
            except queue.Empty:
                raise Unreachable(
                    f"Sakura did not answer within {deadline:g}s ({ENV_DEADLINE}) while "
                    f"reading {', '.join(str(s) for s in wanted)} from vault {vault_id}"
                ) from None
            if isinstance(outcome, BaseException):
                raise _first_failure(index, outcome, outcomes)
            got[index] = outcome
    finally:
        stop.set()
    return {wanted[index]: got[index] for index in range(len(wanted))}


def _first_failure(
    index: int,
    error: BaseException,
    outcomes: queue.SimpleQueue[tuple[int, FetchedSecret | BaseException]],
) -> BaseException:
    """Of the failures in by now, the first in plan order, so the one reported is predictable."""
    failures = {index: error}
    while True:
        try:
            other, outcome = outcomes.get_nowait()
        except queue.Empty:
            return failures[min(failures)]
        if isinstance(outcome, BaseException):
            failures[other] = outcome


def _one(reader: Reads, vault_id: str, wanted: SecretVersion, deadline: float) -> FetchedSecret:
    try:
        unveiled = reader.unveil(vault_id, wanted.name, wanted.version)
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
