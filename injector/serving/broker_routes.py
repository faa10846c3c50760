"""HTTP shell of the broker: `POST SECRETS_PATH` on the injector's broker port (TLS).

Parses the bearer token and the body, hands both to the Broker, and turns its answer or
refusal into JSON (contract/broker.py). Each kind of refusal (injector.broker.errors) has its
status here, and only here; error bodies are a `Refusal`, `{"error": "<one line>"}`, with a
`reason` the init container acts on where retrying cannot help, and never carry a value. The
answer is encoded and sent within the process's budget of answer bytes (`answers.py`).
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contract.broker import (
    ANSWER_TOO_LARGE,
    CREDENTIALS_REJECTED,
    MAX_BODY_BYTES,
    SECRETS_PATH,
    Refusal,
    parse_request,
)
from contract.errors import BadRequest
from contract.pod import TOKEN_AUDIENCE
from injector.broker.audit import audit_refused
from injector.broker.errors import (
    AccessDenied,
    BrokerError,
    CredentialsRejected,
    NamespaceCrowded,
    ReviewUnavailable,
    SecretAbsent,
    SecretsUnavailable,
    TokenRejected,
)
from injector.broker.service import Broker
from injector.serving.answers import AnswerBudget, BudgetedAnswer, budgeted
from injector.serving.bodies import read_capped
from injector.serving.errors import AnswerRefused, BodyTooLarge

STATUSES: dict[type[BrokerError], int] = {
    TokenRejected: 401,
    AccessDenied: 403,
    SecretAbsent: 404,
    NamespaceCrowded: 429,
    CredentialsRejected: 503,
    SecretsUnavailable: 503,
    ReviewUnavailable: 503,
}
"""The status of each kind of refusal; a kind not listed is a 503 (the broker failed)."""
REASONS: dict[type[BrokerError], str] = {CredentialsRejected: CREDENTIALS_REJECTED}
_NO_STORE = {"Cache-Control": "no-store"}


def broker_routes(broker: Broker, budget: AnswerBudget | None = None) -> list[Route]:
    """The routes of the broker port (`injector.serving.app.create_apps`), never of the webhook's.

    `budget`: the process's answer bytes in flight (default: a budget of its own).
    """
    answers = budget if budget is not None else AnswerBudget()

    async def secrets(request: Request) -> Response | BudgetedAnswer:
        client = request.client.host if request.client is not None else ""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            missing = TokenRejected(
                "no bearer token; send 'Authorization: Bearer <projected ServiceAccount token>' "
                f"(audience {TOKEN_AUDIENCE})"
            )
            audit_refused(None, None, client, missing)
            broker.answers.refused("", missing)
            return _error(401, missing.message)
        try:
            body = await read_capped(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            audit_refused(None, None, client, BadRequest("the body is too large"))
            broker.answers.count("", "malformed")
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            wanted = parse_request(body)
        except BadRequest as exc:
            audit_refused(None, None, client, exc)
            broker.answers.count("", "malformed")
            return _error(400, str(exc))
        try:
            answer = await broker.fetch(token, wanted, client=client)
        except BrokerError as exc:
            return _error(
                status_of(exc), exc.message, retry_after=exc.retry_after, reason=reason_of(exc)
            )
        try:
            return await budgeted(answer, answers, _NO_STORE)
        except AnswerRefused as exc:  # after the service's served line: the value was not sent
            audit_refused(None, wanted, client, exc)
            reason = ANSWER_TOO_LARGE if exc.status == 422 else None
            return _error(exc.status, exc.message, retry_after=exc.retry_after, reason=reason)

    return [Route(SECRETS_PATH, secrets, methods=["POST"])]


def status_of(refusal: BrokerError) -> int:
    """The HTTP status of a refusal, by its kind."""
    return STATUSES.get(type(refusal), 503)


def reason_of(refusal: BrokerError) -> str | None:
    """The `reason` the answer carries next to the message, for refusals retrying cannot fix."""
    return REASONS.get(type(refusal))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None when absent or empty."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _error(
    status: int, message: str, *, retry_after: float | None = None, reason: str | None = None
) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="{TOKEN_AUDIENCE}"'
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = Refusal(message, reason).to_json()
    return Response(body, status_code=status, headers=headers, media_type="application/json")
