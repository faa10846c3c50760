"""Broker mode: one POST to the injector for every secret of the plan.

The request carries the pod's projected ServiceAccount token; the broker decides who may read
what. 503 (Sakura throttled or down) and connection failures are retried until the deadline,
honouring Retry-After; 400/401/403/404/422 are final and reported with the broker's own line.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from contract import Plan, SecretVersion
from sakura.retry import parse_retry_after
from sidecar.config import BrokerSettings
from sidecar.errors import (
    BadAnswer,
    CredentialsRejected,
    FetchError,
    Forbidden,
    MissingToken,
    Rejected,
    SecretNotFound,
    Throttled,
    Unauthenticated,
    Unreachable,
)
from sidecar.fetched import Fetched, Values

PATH = "/v1/secrets"
REQUEST_TIMEOUT = 15.0
BACKOFF_START = 0.5
BACKOFF_CAP = 5.0
MAX_MESSAGE = 400
# Gateways in front of the injector answer these while it restarts; treat them like 503.
RETRIED_STATUSES = {429, 502, 503, 504}
CREDENTIALS_REJECTED = "credentials_rejected"
"""The broker's `reason` when Sakura refused the injector's key (a 503 not worth retrying)."""

log = logging.getLogger(__name__)


def read_token(settings: BrokerSettings) -> str:
    path = settings.token_file
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise MissingToken(
            f"token file {str(path)!r} does not exist; broker mode needs the projected "
            "ServiceAccount token (volume sakura-secrets-token) the injector adds, so re-create "
            "the pod through the webhook, or use direct mode (credentials-secret)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingToken(
            f"token file {str(path)!r} cannot be read ({type(exc).__name__}); "
            "check the sakura-secrets-token volume and the container's user"
        ) from None
    if not token:
        raise MissingToken(f"token file {str(path)!r} is empty; the kubelet did not project it")
    return token


def fetch(
    plan: Plan,
    settings: BrokerSettings,
    *,
    deadline: float,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Values:
    """Ask the broker for all of `plan.secrets()` at once; retry transient failures in time."""
    token = read_token(settings)
    wanted = plan.secrets()
    body = {
        "vault_id": plan.vault_id,
        "secrets": [{"name": s.name, "version": s.version} for s in wanted],
    }
    url = settings.url + PATH
    names = _names(wanted)
    started = clock()
    attempt = 0
    with httpx.Client(verify=settings.ssl_context, transport=transport) as client:
        while True:
            remaining = deadline - (clock() - started)
            try:
                response = _post(
                    client,
                    url,
                    body,
                    token,
                    timeout=max(0.1, min(REQUEST_TIMEOUT, remaining)),
                    past_deadline=lambda: clock() - started > deadline,
                )
            except _TooSlow:
                raise Unreachable(
                    f"the broker {settings.url} began answering but did not finish within "
                    f"{deadline:g}s (SAKURA_SECRETS_DEADLINE); secrets {names} were not fetched; "
                    "check the injector's load and the network path to it"
                ) from None
            except httpx.TransportError as exc:
                if _certificate_rejected(exc):
                    raise Unreachable(
                        f"the broker {settings.url} presented a certificate not signed by "
                        f"SAKURA_SECRETS_BROKER_CA ({_cause(exc)}); secrets {names} were not "
                        "fetched; check that the injector's CA and serving certificate match"
                    ) from None
                wait = min(BACKOFF_CAP, BACKOFF_START * 2**attempt)
                failure: FetchError = Unreachable(
                    f"broker {settings.url} unreachable for {deadline:g}s "
                    f"(SAKURA_SECRETS_DEADLINE), last error {_cause(exc)}; secrets {names} were "
                    "not fetched; check that the injector pods are running and its Service "
                    "answers on this URL"
                )
            else:
                if response.status_code == 200:
                    return _parse(response, wanted)
                message = _broker_message(response)
                if _reason(response) == CREDENTIALS_REJECTED:
                    raise CredentialsRejected(
                        f"{message}; secrets {names} were not fetched; the pod restarts and "
                        "tries again, fixing it is for the injector's operator"
                    )
                if response.status_code not in RETRIED_STATUSES:
                    raise _final_error(response.status_code, message, names)
                wait = parse_retry_after(response.headers.get("Retry-After")) or min(
                    BACKOFF_CAP, BACKOFF_START * 2**attempt
                )
                failure = Throttled(
                    f"{message} (HTTP {response.status_code}); still failing after {deadline:g}s "
                    f"(SAKURA_SECRETS_DEADLINE) fetching {names}; the pod restarts and tries "
                    "again, raise the deadline or check Sakura's status and quota"
                )
            if clock() - started + wait > deadline:
                raise failure
            log.info("broker not ready (attempt %d), retrying in %.1fs", attempt + 1, wait)
            sleep(wait)
            attempt += 1


class _TooSlow(Exception):
    """The answer was still arriving when the deadline passed."""


def _post(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    token: str,
    *,
    timeout: float,
    past_deadline: Callable[[], bool],
) -> httpx.Response:
    """POST and read the answer, checking the deadline between chunks.

    httpx's timeout bounds each read, not the whole answer: a peer that trickles bytes would
    otherwise hold the pod in Init for as long as it likes.
    """
    headers = {"Authorization": f"Bearer {token}"}
    with client.stream("POST", url, json=body, headers=headers, timeout=timeout) as streamed:
        chunks = []
        for chunk in streamed.iter_raw():
            if past_deadline():
                raise _TooSlow
            chunks.append(chunk)
    return httpx.Response(
        streamed.status_code,
        headers=streamed.headers,
        content=b"".join(chunks),
        request=streamed.request,
    )


def _final_error(status: int, message: str, names: str) -> FetchError:
    if status == 401:
        return Unauthenticated(
            f"{message}; the broker did not accept the pod's ServiceAccount token "
            f"(audience sakura-secrets-injector), secrets {names} were not fetched"
        )
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return SecretNotFound(message)
    if status == 422:  # the answer would pass the broker's bound: asking again cannot help
        return Rejected(f"{message}; secrets {names} were not fetched")
    if status == 400:
        return Rejected(
            f"{message}; the broker refused the request for {names}; the init image and the "
            "injector may be different versions"
        )
    return BadAnswer(f"broker answered HTTP {status}: {message}; secrets {names} were not fetched")


def _broker_message(response: httpx.Response) -> str:
    """The broker's one line from `{"error": ...}`; never the raw body, which is not ours."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    text = data.get("error") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        return f"HTTP {response.status_code} {response.reason_phrase} from the broker"
    line = " ".join(text.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _reason(response: httpx.Response) -> str | None:
    """The broker's machine-readable `reason`, if its error body has one."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None


def _parse(response: httpx.Response, wanted: Sequence[SecretVersion]) -> Values:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        raise BadAnswer("the broker answered 200 with a body that is not JSON") from None
    items = data.get("secrets") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != len(wanted):
        raise BadAnswer(
            f"the broker answered 200 without one entry per requested secret "
            f"({len(wanted)} asked); the init image and the injector may be different versions"
        )
    values: Values = {}
    for requested, item in zip(wanted, items, strict=True):
        values[requested] = _entry(requested, item)
    return values


def _entry(requested: SecretVersion, item: Any) -> Fetched:
    problem = None
    if not isinstance(item, dict):
        problem = "is not an object"
    elif item.get("name") != requested.name:
        problem = "names another secret"
    elif item.get("requested_version", requested.version) != requested.version:
        problem = "answers another requested version"
    elif not isinstance(item.get("version"), int) or isinstance(item.get("version"), bool):
        problem = "has no whole-number version"
    elif requested.version is not None and item["version"] != requested.version:
        problem = f"carries version {item['version']}, not the pinned one"
    elif not isinstance(item.get("value"), str):
        problem = "has no text value"
    if problem is not None:
        raise BadAnswer(
            f"the broker's answer for secret {str(requested)!r} {problem}; the init image and "
            "the injector may be different versions"
        )
    return Fetched(requested, item["version"], item["value"])


def _names(wanted: Sequence[SecretVersion]) -> str:
    text = ", ".join(str(s) for s in wanted)
    return text if len(text) <= 200 else text[:197] + "..."


def _certificate_rejected(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["fetch", "read_token"]
