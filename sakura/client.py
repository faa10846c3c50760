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
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx

from sakura import wire
from sakura.authorizer import FORM, Authorizer, GrantCredentials, hint_for
from sakura.bearer import BearerToken, parse_token_answer
from sakura.config import SakuraConfig
from sakura.credentials import CredentialSource, FixedCredentials, configured_credentials
from sakura.errors import (
    BadResponse,
    Crowded,
    NotFound,
    NotFoundKind,
    SakuraError,
    Throttled,
    Unavailable,
    with_note,
)
from sakura.ratelimit import RateLimiter, Tenant
from sakura.reader import SecretInfo, Unveiled, VaultInfo
from sakura.retry import Backoff, is_retryable_status, parse_retry_after
from sakura.statuses import error_for, missing_version

USER_AGENT = "sakura-secrets-injector/0.1 (+https://github.com/sakura-secrets-injector)"
log = logging.getLogger(__name__)


class SakuraClient:
    """Talks to one Secret Manager endpoint; use as `async with SakuraClient(cfg) as c:`."""

    def __init__(
        self,
        config: SakuraConfig,
        *,
        credentials: CredentialSource | None = None,
        limiter: RateLimiter | None = None,
        deadline: float = 30.0,
        timeout: float = 10.0,
        max_retries: int = 6,
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
        self.config = config
        self.credentials: CredentialSource = (
            credentials
            if credentials is not None
            else FixedCredentials(configured_credentials(config))
        )
        self.authorizer = Authorizer(self._exchange, clock=clock)  # a principal's tokens
        # told of each token exchange's outcome: the injector counts them as Sakura calls
        self.on_exchange: Callable[[SakuraError | None], None] = lambda error: None
        self._clock = clock
        self._sleep = sleep
        self.limiter = limiter if limiter is not None else RateLimiter(clock=clock, sleep=sleep)
        self.deadline = deadline
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff if backoff is not None else Backoff()
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Requested-With": "XMLHttpRequest",
                "X-Sakura-Bigint-As-Int": "1",
                "User-Agent": USER_AGENT,
            },
            transport=transport,
            verify=_tls(verify),
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
        label = name if version is None else f"{name}@{version}"
        what = f"reading secret {label!r} from vault {vault_id}"
        body: dict[str, Any] = {"Name": name}
        if version is not None:
            body["Version"] = version
        path = f"/secretmanager/vaults/{_segment(vault_id)}/secrets/unveil"
        try:
            response = await self._call(
                "POST",
                path,
                what,
                json={"Secret": body},
                retry=True,
                missing=("secret", name),
                vault_id=vault_id,
                tenant=tenant,
            )
        except NotFound as exc:
            raise await self._explain_missing(exc, vault_id, name, version, tenant) from None
        data = wire.json_object(response, what)
        secret = data.get("Secret")
        if not isinstance(secret, dict):
            raise BadResponse(f"{what}: Sakura's answer has no object 'Secret'", status=200)
        value = wire.field_of(secret, "Value", str, what, 200)
        got = secret.get("Version")
        if got is None and version is not None:
            got = version
        if not isinstance(got, int) or isinstance(got, bool):
            raise BadResponse(f"{what}: Sakura's answer has no integer 'Version'", status=200)
        return Unveiled(name=name, version=got, value=value)

    async def list_secrets(self, vault_id: str, *, tenant: Tenant = None) -> list[SecretInfo]:
        """Names and latest versions of a vault's secrets (never values)."""
        what = f"listing secrets of vault {vault_id}"
        path = f"/secretmanager/vaults/{_segment(vault_id)}/secrets"
        response = await self._call(
            "GET",
            path,
            what,
            retry=True,
            missing=("vault", vault_id),
            vault_id=vault_id,
            tenant=tenant,
        )
        items = wire.field_of(wire.json_object(response, what), "Secrets", list, what, 200)
        result = []
        for item in items:
            if not isinstance(item, dict):
                raise BadResponse(f"{what}: an entry of 'Secrets' is not an object", status=200)
            result.append(
                SecretInfo(
                    name=wire.field_of(item, "Name", str, what, 200),
                    latest_version=wire.field_of(item, "LatestVersion", int, what, 200),
                )
            )
        return result

    async def list_vaults(self) -> list[VaultInfo]:
        what = "listing vaults"
        response = await self._call(
            "GET", "/secretmanager/vaults", what, retry=True, missing=("vault", "")
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
        path = f"/secretmanager/vaults/{_segment(vault_id)}/secrets"
        body = {"Secret": {"Name": name, "Value": value}}
        response = await self._call(
            "POST",
            path,
            what,
            json=body,
            retry=False,
            missing=("vault", vault_id),
            vault_id=vault_id,
            sensitive=value,
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
        path = f"/secretmanager/vaults/{_segment(vault_id)}/secrets"
        await self._call(
            "DELETE",
            path,
            what,
            json={"Secret": {"Name": name}},
            retry=False,
            missing=("secret", name),
            vault_id=vault_id,
        )

    # -- the request loop ---------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        retry: bool,
        missing: tuple[NotFoundKind, str],
        vault_id: str | None = None,
        sensitive: str = "",
        tenant: Tenant = None,
        form: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request with rate limiting, retries (when `retry`) and the deadline.

        A `form` is the token exchange: sent form-encoded, with no credentials."""
        deadline_at = self._clock() + self.deadline
        sent: tuple[str, ...] = tuple(form.values()) if form else ()
        attempt = 0
        renewed = False  # a Bearer token refused with 401 is renewed once per call
        previous: SakuraError | None = None
        while True:
            remaining = deadline_at - self._clock()
            if remaining <= 0:
                raise Unavailable(f"{what}: no answer within the {self.deadline:g}s deadline")
            try:
                granted = await self.limiter.acquire(max_wait=remaining, tenant=tenant)
            except Crowded as exc:
                raise Crowded(
                    f"{what}: {exc.message}", retry_after=exc.retry_after, waiting=exc.waiting
                ) from None
            if not granted:
                wait = self.limiter.next_slot_in()
                raise Throttled(
                    f"{what}: the client-side rate limit ({self.limiter.per_minute:g}/min, "
                    f"or a Retry-After from Sakura) leaves no slot within the "
                    f"{self.deadline:g}s deadline; the next is in {wait:.3g}s",
                    retry_after=wait,
                    status=None,
                )
            key = self.credentials.current()  # a rotated key counts from the next attempt on
            authorization = None if form else await self.authorizer.authorize(key)
            remaining = deadline_at - self._clock()
            # scrubbed from every message: each key and token sent
            sent = tuple(dict.fromkeys((*sent, *key.secrets, *self.authorizer.bearer_values)))
            retry_after: float | None = None
            held_off = False  # a 429's Retry-After: the limiter makes every caller wait it out
            try:
                # httpx's timeout bounds each read, not the whole answer: a peer that trickles
                # bytes would never trip it. The deadline bounds the whole exchange.
                async with asyncio.timeout(max(0.001, remaining)):
                    response = await self._http.request(
                        method,
                        path,
                        json=json,
                        data=form,
                        headers={"Content-Type": FORM} if form else None,
                        auth=authorization.auth if authorization else None,
                        timeout=max(0.001, min(self.timeout, remaining)),
                    )
            except (httpx.TimeoutException, TimeoutError):
                if previous is not None and remaining < self.timeout:
                    # The deadline, not Sakura, cut this attempt short: the earlier failure
                    # is what the user needs to see.
                    raise with_note(
                        previous,
                        f" (gave up after {attempt + 1} attempts: the {self.deadline:g}s "
                        "deadline ran out)",
                    ) from None
                error: SakuraError = Unavailable(
                    f"{what}: Sakura did not answer within {min(self.timeout, remaining):.3g}s"
                    + _maybe_done(retry)
                )
                retryable = True
            except httpx.TransportError as exc:
                error = Unavailable(
                    f"{what}: cannot reach {self.config.base_url} ({type(exc).__name__}: "
                    f"{wire.scrub(str(exc), (*sent, sensitive))})" + _maybe_done(retry)
                )
                retryable = True
            else:
                if response.status_code < 400:
                    return response
                if (
                    response.status_code == 401
                    and not renewed
                    and authorization is not None
                    and self.authorizer.refused(authorization)
                ):
                    renewed = True  # the token was revoked or the clocks disagree: buy another
                    continue
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if response.status_code == 429 and retry_after is not None:
                    self.limiter.hold_off(retry_after)  # the quota is the account's, not ours
                    held_off = True
                text = wire.error_text(response, (*sent, sensitive))
                hint = hint_for(key, response.headers.get("date"), time.time())
                error = error_for(
                    response.status_code, what, text, retry_after, missing, vault_id, hint
                )
                retryable = is_retryable_status(response.status_code)
            if not retry or not retryable or attempt >= self.max_retries:
                raise error
            delay = retry_after if retry_after is not None else self.backoff.delay(attempt)
            if self._clock() + delay >= deadline_at:
                raise with_note(
                    error,
                    f" (gave up after {attempt + 1} attempts: the next retry in {delay:.3g}s "
                    f"would pass the {self.deadline:g}s deadline)",
                )
            attempt += 1
            previous = error
            log.debug(
                "%s: attempt %d failed (%s), retrying in %.3gs",
                what,
                attempt,
                error.status or type(error).__name__,
                delay,
            )
            if not held_off:
                await self._sleep(delay)

    async def _exchange(self, key: GrantCredentials) -> BearerToken:
        """Buy a Bearer token with `key`'s signed grant: a Sakura call like any other."""
        what = f"getting a token for service principal key {key.fingerprint}"
        try:
            response = await self._call(
                "POST",
                key.token_endpoint,
                what,
                form=key.grant(time.time()),
                retry=True,
                missing=("vault", ""),
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


def _maybe_done(retry: bool) -> str:
    """A call that is not retried may still have taken effect: say so."""
    return "" if retry else "; it may or may not have taken effect, list the secrets to check"


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _tls(verify: bool | str) -> bool | ssl.SSLContext:
    """A CA bundle path (file or directory) becomes an SSL context, as httpx now wants."""
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)
