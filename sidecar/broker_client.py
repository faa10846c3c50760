"""Broker mode: one POST to the injector for every secret of the plan.

The request carries the pod's projected ServiceAccount token; the broker decides who may read
what. 503 (Sakura throttled or down) and connection failures are retried until the deadline,
honouring Retry-After; 400/401/403/404/422 are final and reported with the broker's own line.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from contract import Plan, SecretVersion
from contract.annotations import CREDENTIALS_SECRET, short_name
from contract.broker import (
    CREDENTIALS_REJECTED,
    SECRETS_PATH,
    AnswerItem,
    FetchedSecret,
    Refusal,
    SecretRequest,
    parse_refresh_answer,
    parse_refusal,
)
from contract.errors import InvalidAnswer
from contract.pod import ENV_BROKER_CA, ENV_DEADLINE, TOKEN_AUDIENCE, TOKEN_VOLUME
from sakura.retry import parse_retry_after
from sakura.within import read_within
from sidecar.config import BrokerSettings
from sidecar.errors import (
    BadAnswer,
    CredentialsRejected,
    FetchError,
    Forbidden,
    MissingToken,
    RequestRefused,
    SecretNotFound,
    StillThrottled,
    Unauthenticated,
    Unreachable,
)
from sidecar.fetched import Values

REQUEST_TIMEOUT = 15.0
BACKOFF_START = 0.5
BACKOFF_CAP = 5.0
MAX_MESSAGE = 400
# Gateways in front of the injector answer these while it restarts; treat them like 503.
RETRIED_STATUSES = {429, 502, 503, 504}

log = logging.getLogger(__name__)


def read_token(settings: BrokerSettings) -> str:
    path = settings.token_file
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise MissingToken(
            f"token file {str(path)!r} does not exist; broker mode needs the projected "
            f"ServiceAccount token (volume {TOKEN_VOLUME}) the injector adds, so re-create "
            f"the pod through the webhook, or use direct mode ({short_name(CREDENTIALS_SECRET)})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingToken(
            f"token file {str(path)!r} cannot be read ({type(exc).__name__}); "
            f"check the {TOKEN_VOLUME} volume and the container's user"
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
    assert plan.vault_id is not None  # config.load refuses a plan without a vault
    request = SecretRequest(plan.vault_id, plan.secrets())
    items = exchange(
        request, settings, deadline=deadline, transport=transport, clock=clock, sleep=sleep
    )
    return {item.requested: item for item in items if isinstance(item, FetchedSecret)}


def exchange(
    request: SecretRequest,
    settings: BrokerSettings,
    *,
    deadline: float,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[AnswerItem, ...]:
    """One request (a refresh's holds versions: an item may be `Unchanged`), retried in time.

    The token file is read again before each attempt: the kubelet rotates projected tokens, and
    a refresh container lives as long as the pod.
    """
    wanted = request.secrets
    body = request.to_json()
    url = settings.url + SECRETS_PATH
    names = _names(wanted)
    started = clock()
    attempt = 0
    with httpx.Client(verify=settings.ssl_context, transport=transport) as client:
        while True:
            token = read_token(settings)
            remaining = deadline - (clock() - started)
            try:
                response = read_within(
                    client,
                    client.build_request(
                        "POST",
                        url,
                        content=body,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                        },
                        timeout=max(0.1, min(REQUEST_TIMEOUT, remaining)),
                    ),
                    None,
                    give_up_at=started + deadline,
                    clock=clock,
                )
            except TimeoutError:
                raise Unreachable(
                    f"the broker {settings.url} began answering but did not finish within "
                    f"{deadline:g}s ({ENV_DEADLINE}); secrets {names} were not fetched; "
                    "check the injector's load and the network path to it"
                ) from None
            except httpx.TransportError as exc:
                if _certificate_rejected(exc):
                    raise Unreachable(
                        f"the broker {settings.url} presented a certificate not signed by "
                        f"{ENV_BROKER_CA} ({_cause(exc)}); secrets {names} were not "
                        "fetched; check that the injector's CA and serving certificate match"
                    ) from None
                wait = min(BACKOFF_CAP, BACKOFF_START * 2**attempt)
                failure: FetchError = Unreachable(
                    f"broker {settings.url} unreachable for {deadline:g}s "
                    f"({ENV_DEADLINE}), last error {_cause(exc)}; secrets {names} were "
                    "not fetched; check that the injector pods are running and its Service "
                    "answers on this URL"
                )
            else:
                if response.status_code == 200:
                    return _parse(response, wanted, request.held)
                refusal = parse_refusal(response.content)
                message = _broker_message(response, refusal)
                if refusal.reason == CREDENTIALS_REJECTED:
                    raise CredentialsRejected(
                        f"{message}; secrets {names} were not fetched; it is tried again "
                        "later, fixing it is for the injector's operator"
                    )
                if response.status_code not in RETRIED_STATUSES:
                    raise _final_error(response.status_code, message, names)
                wait = parse_retry_after(response.headers.get("Retry-After")) or min(
                    BACKOFF_CAP, BACKOFF_START * 2**attempt
                )
                failure = StillThrottled(
                    f"{message} (HTTP {response.status_code}); still failing after {deadline:g}s "
                    f"({ENV_DEADLINE}) fetching {names}; it is tried again "
                    "later, raise the deadline or check Sakura's status and quota"
                )
            if clock() - started + wait > deadline:
                raise failure
            log.info("broker not ready (attempt %d), retrying in %.1fs", attempt + 1, wait)
            sleep(wait)
            attempt += 1


def _final_error(status: int, message: str, names: str) -> FetchError:
    if status == 401:
        return Unauthenticated(
            f"{message}; the broker did not accept the pod's ServiceAccount token "
            f"(audience {TOKEN_AUDIENCE}), secrets {names} were not fetched"
        )
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return SecretNotFound(message)
    if status == 422:  # the answer would pass the broker's bound: asking again cannot help
        return RequestRefused(f"{message}; secrets {names} were not fetched")
    if status == 400:
        return RequestRefused(
            f"{message}; the broker refused the request for {names}; the init image and the "
            "injector may be different versions"
        )
    return BadAnswer(f"broker answered HTTP {status}: {message}; secrets {names} were not fetched")


def _broker_message(response: httpx.Response, refusal: Refusal) -> str:
    """The broker's one line, never the raw body, which is not ours (a gateway's page, say)."""
    if not refusal.error.strip():
        return f"HTTP {response.status_code} {response.reason_phrase} from the broker"
    line = " ".join(refusal.error.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _parse(
    response: httpx.Response, wanted: Sequence[SecretVersion], held: Mapping[str, int]
) -> tuple[AnswerItem, ...]:
    try:
        return parse_refresh_answer(response.content, wanted, held)
    except InvalidAnswer as exc:
        raise BadAnswer(str(exc)) from None


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


__all__ = ["exchange", "fetch", "read_token"]
