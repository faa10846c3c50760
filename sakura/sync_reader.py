"""A blocking reader of Secret Manager for the init container: the same loop, no event loop.

The init container reads each secret once and exits; asyncio and anyio would cost it as much
start-up time again as httpx itself (docs/init-container.md, "Start-up cost"). This reader
drives the client's own attempts (sakura/attempts.py: rate limit, retries, Retry-After, the
deadline, scrubbed messages) with plain blocking calls, and is safe to share between threads
(httpx.Client's pool and the limiter's bucket take locks), so a plan's secrets are read at
once on a few threads. An API key only: a service principal's tokens are renewed by a single
flight on an event loop (sakura/bearer.py), so direct mode uses the async client for one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import httpx

from sakura import reads
from sakura.attempts import (
    DEADLINE,
    HEADERS,
    MAX_RETRIES,
    TIMEOUT,
    Acquire,
    Authorize,
    CallLoop,
    Send,
    Step,
    tls,
)
from sakura.authorizer import Authorization
from sakura.config import SakuraConfig
from sakura.credentials import ApiKey, FixedCredentials
from sakura.errors import NotFound, SakuraError
from sakura.ratelimit import RateLimiter
from sakura.reader import SecretInfo, Unveiled
from sakura.retry import Backoff
from sakura.statuses import missing_version
from sakura.within import read_within


class SyncReader(CallLoop):
    """Reads one Secret Manager endpoint with an API key; `with SyncReader(cfg, ...) as r:`."""

    def __init__(
        self,
        config: SakuraConfig,
        *,
        limiter: RateLimiter,
        deadline: float = DEADLINE,
        timeout: float = TIMEOUT,
        max_retries: int = MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if config.principal is not None:
            raise ValueError("SyncReader takes an API key; use SakuraClient for a principal")
        super().__init__(
            config,
            FixedCredentials(ApiKey(config.access_token, config.access_token_secret)),
            limiter,
            deadline=deadline,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            clock=clock,
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=config.base_url,
            headers=HEADERS,
            transport=transport,
            verify=tls(verify),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"SyncReader(base_url={self.config.base_url!r})"

    def __enter__(self) -> SyncReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def unveil(self, vault_id: str, name: str, version: int | None = None) -> Unveiled:
        """As `SakuraClient.unveil`."""
        read = reads.unveiling(vault_id, name, version)
        try:
            response = self._read(read)
        except NotFound as exc:
            if exc.kind != "secret" or version is None:
                raise
            try:
                secrets: list[SecretInfo] | None = self.list_secrets(vault_id)
            except SakuraError:
                secrets = None
            raise missing_version(exc, vault_id, name, version, secrets) from None
        return reads.unveiled(response, read, name, version)

    def list_secrets(self, vault_id: str) -> list[SecretInfo]:
        """As `SakuraClient.list_secrets`."""
        read = reads.listing(vault_id)
        return reads.listed(self._read(read), read)

    def _read(self, read: reads.Read) -> httpx.Response:
        """Perform the read's steps (sakura/attempts.py) with blocking calls."""
        steps = self.reading(read)
        outcome: object = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                response: httpx.Response = done.value
                return response
            outcome = self._perform(step)

    def _perform(self, step: Step) -> object:
        if isinstance(step, Send):
            try:
                return read_within(
                    self._http,
                    self._http.build_request(
                        step.method, step.path, json=step.json, timeout=step.timeout
                    ),
                    step.authorization.auth if step.authorization else None,
                    give_up_at=self._clock() + step.remaining,
                    clock=self._clock,
                )
            except (httpx.TransportError, TimeoutError) as exc:
                return exc
        if isinstance(step, Acquire):
            wait = self.limiter.reserve(max_wait=step.max_wait)
            if wait is None:
                return False
            if wait > 0:
                self._sleep(wait)
            return True
        if isinstance(step, Authorize):
            return Authorization(step.key.auth())
        self._sleep(step.seconds)
        return None
