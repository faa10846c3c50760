"""An async client for Sakura's Secret Manager: unveil, list, create and delete secrets.

One pooled httpx.AsyncClient per endpoint, the SDK's headers, a client-side rate limiter,
retries for safe calls only, and an overall deadline per call. Each request asks its
`CredentialSource` for the key to send, so a rotated key is used from the next request on
(sakura/credentials.py): an API key as Basic auth, a service principal as a Bearer token
bought at the token endpoint through this same loop (sakura/authorizer.py). Only httpx and the
standard library are imported, so the init container can use it without the injector's deps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import httpx

from sakura import reads, wire
from sakura.attempts import (
    DEADLINE,
    HEADERS,
    MAX_RETRIES,
    TIMEOUT,
    Acquire,
    Attempts,
    Authorize,
    CallLoop,
    Send,
    Step,
    tls,
)
from sakura.authorizer import FORM, Authorization, Authorizer, GrantCredentials
from sakura.bearer import BearerToken, parse_token_answer
from sakura.config import SakuraConfig
from sakura.credentials import CredentialSource, FixedCredentials, configured_credentials
from sakura.errors import BadResponse, Crowded, NotFound, SakuraError
from sakura.ratelimit import RateLimiter, Tenant
from sakura.reader import SecretInfo, Unveiled, VaultInfo
from sakura.retry import Backoff
from sakura.statuses import missing_version


class SakuraClient(CallLoop):
    """Talks to one Secret Manager endpoint; use as `async with SakuraClient(cfg) as c:`."""

    def __init__(
        self,
        config: SakuraConfig,
        *,
        credentials: CredentialSource | None = None,
        limiter: RateLimiter | None = None,
        deadline: float = DEADLINE,
        timeout: float = TIMEOUT,
        max_retries: int = MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """`clock` and `sleep` are the time the deadline and the waits between retries run on
        (a test passes a hand-driven pair); the default limiter runs on them too.
        `credentials` (default: the config's key, fixed) is asked for the key before each
        request."""
        super().__init__(
            config,
            credentials
            if credentials is not None
            else FixedCredentials(configured_credentials(config)),
            limiter if limiter is not None else RateLimiter(clock=clock, sleep=sleep),
            deadline=deadline,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            clock=clock,
        )
        self.authorizer = Authorizer(self._exchange, clock=clock)  # a principal's tokens
        # told of each token exchange's outcome: the injector counts them as Sakura calls
        self.on_exchange: Callable[[SakuraError | None], None] = lambda error: None
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers=HEADERS,
            transport=transport,
            verify=tls(verify),
            timeout=timeout,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"SakuraClient(base_url={self.config.base_url!r})"

    async def __aenter__(self) -> SakuraClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- operations ---------------------------------------------------------------------

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: Tenant = None
    ) -> Unveiled:
        """Read a value: the latest version, or `version` when pinned. Safe to retry.

        `tenant` (reads take one): whose call this is, for the rate limiter's round-robin
        between tenants and its bound on each tenant's waiting calls.
        """
        read = reads.unveiling(vault_id, name, version)
        try:
            response = await self._read(read, tenant)
        except NotFound as exc:
            raise await self._explain_missing(exc, vault_id, name, version, tenant) from None
        return reads.unveiled(response, read, name, version)

    async def list_secrets(self, vault_id: str, *, tenant: Tenant = None) -> list[SecretInfo]:
        """Names and latest versions of a vault's secrets (never values)."""
        read = reads.listing(vault_id)
        return reads.listed(await self._read(read, tenant), read)

    async def list_vaults(self) -> list[VaultInfo]:
        what = "listing vaults"
        response = await self._drive(
            self.attempts("GET", "/secretmanager/vaults", what, retry=True, missing=("vault", ""))
        )
        items = wire.field_of(wire.json_object(response, what), "Vaults", list, what, 200)
        result = []
        for item in items:
            if not isinstance(item, dict):
                raise BadResponse(f"{what}: an entry of 'Vaults' is not an object", status=200)
            tags = item.get("Tags") or []
            result.append(
                VaultInfo(
                    id=str(wire.field_of(item, "ID", (str, int), what, 200)),
                    name=wire.field_of(item, "Name", str, what, 200),
                    description=wire.optional_text(item, "Description"),
                    kms_key_id=wire.optional_text(item, "KmsKeyID"),
                    tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                    created_at=wire.optional_text(item, "CreatedAt"),
                    modified_at=wire.optional_text(item, "ModifiedAt"),
                )
            )
        return result

    async def create(self, vault_id: str, name: str, value: str) -> int:
        """Store `value` as a new version of `name`; returns it. Never retried: not idempotent."""
        what = f"creating a version of secret {name!r} in vault {vault_id}"
        path = f"/secretmanager/vaults/{reads.segment(vault_id)}/secrets"
        body = {"Secret": {"Name": name, "Value": value}}
        response = await self._drive(
            self.attempts(
                "POST",
                path,
                what,
                json=body,
                retry=False,
                missing=("vault", vault_id),
                vault_id=vault_id,
                sensitive=value,
            )
        )
        data = wire.json_object(response, what)
        secret = data.get("Secret")
        if not isinstance(secret, dict):
            raise BadResponse(f"{what}: Sakura's answer has no object 'Secret'", status=201)
        version: int = wire.field_of(secret, "LatestVersion", int, what, response.status_code)
        return version

    async def delete(self, vault_id: str, name: str) -> None:
        """Delete a secret with all its versions. Not retried (a retry would see 404)."""
        what = f"deleting secret {name!r} from vault {vault_id}"
        path = f"/secretmanager/vaults/{reads.segment(vault_id)}/secrets"
        await self._drive(
            self.attempts(
                "DELETE",
                path,
                what,
                json={"Secret": {"Name": name}},
                retry=False,
                missing=("secret", name),
                vault_id=vault_id,
            )
        )

    # -- the request loop ---------------------------------------------------------------

    async def _read(self, read: reads.Read, tenant: Tenant) -> httpx.Response:
        return await self._drive(self.reading(read, tenant))

    async def _drive(self, steps: Attempts) -> httpx.Response:
        """Perform a call's steps (sakura/attempts.py) on the event loop."""
        outcome: object = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                response: httpx.Response = done.value
                return response
            outcome = await self._perform(step)

    async def _perform(self, step: Step) -> object:
        if isinstance(step, Send):
            try:
                # httpx's timeout bounds each read, not the whole answer: a peer that trickles
                # bytes would never trip it. The deadline bounds the whole exchange.
                async with asyncio.timeout(step.remaining):
                    return await self._http.request(
                        step.method,
                        step.path,
                        json=step.json,
                        data=step.form,
                        headers={"Content-Type": FORM} if step.form else None,
                        auth=step.authorization.auth if step.authorization else None,
                        timeout=step.timeout,
                    )
            except (httpx.TransportError, TimeoutError) as exc:
                return exc
        if isinstance(step, Acquire):
            try:
                return await self.limiter.acquire(max_wait=step.max_wait, tenant=step.tenant)
            except Crowded as exc:
                return exc
        if isinstance(step, Authorize):
            return await self.authorizer.authorize(step.key)
        await self._sleep(step.seconds)
        return None

    def bearer_values(self) -> tuple[str, ...]:
        return self.authorizer.bearer_values

    def refused(self, authorization: Authorization) -> bool:
        return self.authorizer.refused(authorization)

    async def _exchange(self, key: GrantCredentials) -> BearerToken:
        """Buy a Bearer token with `key`'s signed grant: a Sakura call like any other."""
        what = f"getting a token for service principal key {key.fingerprint}"
        try:
            response = await self._drive(
                self.attempts(
                    "POST",
                    key.token_endpoint,
                    what,
                    form=key.grant(time.time()),
                    retry=True,
                    missing=("vault", ""),
                )
            )
            token = parse_token_answer(wire.json_object(response, what), time.time())
        except SakuraError as error:
            self.on_exchange(error)
            raise
        self.on_exchange(None)
        return token

    async def _explain_missing(
        self, exc: NotFound, vault_id: str, name: str, version: int | None, tenant: Tenant
    ) -> NotFound:
        """Tell a missing version from a missing secret; Sakura says 'not found' for both."""
        if exc.kind != "secret" or version is None:
            return exc
        try:
            secrets = await self.list_secrets(vault_id, tenant=tenant)
        except SakuraError:
            secrets = None
        return missing_version(exc, vault_id, name, version, secrets)
