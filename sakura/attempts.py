"""One Sakura call's attempts, decided without doing any I/O: the client's request loop.

The loop (rate limit, credentials, retries on 429/5xx with Retry-After, a 401 on a Bearer
token renewed once, the overall deadline, and every message scrubbed of keys and tokens) is a
generator of `Step`s. A shell performs each step and sends back its outcome: the async client
(sakura/client.py) with asyncio, the sync reader of the init container (sakura/sync_reader.py)
with plain blocking calls, so a one-shot fetch never loads an event loop. One loop, two ways
to drive it: a fix to a retry rule reaches both.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from sakura import wire
from sakura.authorizer import Authorization, hint_for
from sakura.config import SakuraConfig
from sakura.credentials import Credentials, CredentialSource
from sakura.errors import Crowded, NotFoundKind, SakuraError, Throttled, Unavailable, with_note
from sakura.ratelimit import RateLimiter, Tenant
from sakura.reads import Read
from sakura.retry import Backoff, is_retryable_status, parse_retry_after
from sakura.statuses import error_for

USER_AGENT = "sakura-secrets-injector/0.1 (+https://github.com/sakura-secrets-injector)"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "X-Requested-With": "XMLHttpRequest",
    "X-Sakura-Bigint-As-Int": "1",
    "User-Agent": USER_AGENT,
}
"""What the SDK sends with every request."""

DEADLINE = 30.0
"""Seconds one call may take, its retries included (both shells' default)."""
TIMEOUT = 10.0
"""Seconds one attempt may wait for each read of the answer."""
MAX_RETRIES = 6
"""Attempts after the first, the SDK's."""

log = logging.getLogger("sakura.client")


@dataclass(frozen=True)
class Acquire:
    """Take a slot of the rate limiter, waiting at most `max_wait`: answer True, False (no
    slot in time) or the `Crowded` the limiter raised."""

    max_wait: float
    tenant: Tenant


@dataclass(frozen=True)
class Authorize:
    """What this attempt carries for `key`: answer an `Authorization`."""

    key: Credentials


@dataclass(frozen=True)
class Send:
    """Send the request: answer the response, or the `httpx.TransportError` / `TimeoutError`
    it ended with. `timeout` bounds each read, `remaining` the whole exchange."""

    method: str
    path: str
    json: Any = field(repr=False)
    form: dict[str, str] | None = field(repr=False)
    authorization: Authorization | None
    timeout: float
    remaining: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Acquire | Authorize | Send | Sleep
Attempts = Generator[Step, object, httpx.Response]


class CallLoop:
    """What both shells share: the settings of the loop, and the loop itself."""

    def __init__(
        self,
        config: SakuraConfig,
        credentials: CredentialSource,
        limiter: RateLimiter,
        *,
        deadline: float,
        timeout: float,
        max_retries: int,
        backoff: Backoff | None,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.limiter = limiter
        self.deadline = deadline
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff if backoff is not None else Backoff()
        self._clock = clock

    def attempts(
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
    ) -> Attempts:
        """One request with rate limiting, retries (when `retry`) and the deadline.

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
            granted = yield Acquire(remaining, tenant)
            if isinstance(granted, Crowded):
                raise Crowded(
                    f"{what}: {granted.message}",
                    retry_after=granted.retry_after,
                    waiting=granted.waiting,
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
            authorization = None
            if not form:
                authorized = yield Authorize(key)
                assert isinstance(authorized, Authorization)
                authorization = authorized
            remaining = deadline_at - self._clock()
            # scrubbed from every message: each key and token sent
            sent = tuple(dict.fromkeys((*sent, *key.secrets, *self.bearer_values())))
            retry_after: float | None = None
            held_off = False  # a 429's Retry-After: the limiter makes every caller wait it out
            answer = yield Send(
                method,
                path,
                json,
                form,
                authorization,
                timeout=max(0.001, min(self.timeout, remaining)),
                remaining=max(0.001, remaining),
            )
            if isinstance(answer, httpx.TimeoutException | TimeoutError):
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
                    + maybe_done(retry)
                )
                retryable = True
            elif isinstance(answer, httpx.TransportError):
                error = Unavailable(
                    f"{what}: cannot reach {self.config.base_url} ({type(answer).__name__}: "
                    f"{wire.scrub(str(answer), (*sent, sensitive))})" + maybe_done(retry)
                )
                retryable = True
            else:
                assert isinstance(answer, httpx.Response)
                response = answer
                if response.status_code < 400:
                    return response
                if (
                    response.status_code == 401
                    and not renewed
                    and authorization is not None
                    and self.refused(authorization)
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
                yield Sleep(delay)

    def reading(self, read: Read, tenant: Tenant = None) -> Attempts:
        """The attempts of one of the two reads (safe to retry)."""
        return self.attempts(
            read.method,
            read.path,
            read.what,
            json=read.json,
            retry=True,
            missing=read.missing,
            vault_id=read.vault_id,
            tenant=tenant,
        )

    def bearer_values(self) -> tuple[str, ...]:
        """Every Bearer token held, for scrubbing messages: none with an API key."""
        return ()

    def refused(self, authorization: Authorization) -> bool:
        """Sakura answered 401 to `authorization`: True when a new token may fix it (a shell
        with a service principal's tokens drops the refused one); an API key cannot."""
        return False


def maybe_done(retry: bool) -> str:
    """A call that is not retried may still have taken effect: say so."""
    return "" if retry else "; it may or may not have taken effect, list the secrets to check"


def tls(verify: bool | str) -> bool | ssl.SSLContext:
    """A CA bundle path (file or directory) becomes an SSL context, as httpx now wants."""
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)
