"""HTTP shell of the broker: `POST /v1/secrets` on the injector's broker port (TLS).

Parses the bearer token and the body, hands both to the Broker, and turns its answer or
refusal into JSON. Error bodies are `{"error": "<one line>"}` and never carry a value.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from injector.bodies import BodyTooLarge, read_capped
from injector.broker.service import Broker, BrokerError
from injector.broker.wire import MAX_BODY_BYTES, BadRequest, answer_body, parse_request

SECRETS_PATH = "/v1/secrets"
_NO_STORE = {"Cache-Control": "no-store"}


def broker_routes(broker: Broker) -> list[Route]:
    """The routes of the broker port (`injector.app.create_apps`), never of the webhook's."""

    async def secrets(request: Request) -> JSONResponse:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return _error(
                401,
                "no bearer token; send 'Authorization: Bearer <projected ServiceAccount token>' "
                "(audience sakura-secrets-injector)",
            )
        try:
            body = await read_capped(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            wanted = parse_request(body)
        except BadRequest as exc:
            return _error(400, str(exc))
        try:
            client = request.client.host if request.client is not None else ""
            items = await broker.fetch(token, wanted, client=client)
        except BrokerError as exc:
            return _error(exc.status, exc.message, retry_after=exc.retry_after, reason=exc.reason)
        return JSONResponse(answer_body(items), headers=_NO_STORE)

    return [Route(SECRETS_PATH, secrets, methods=["POST"])]


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
) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sakura-secrets-injector"'
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = {"error": message} if reason is None else {"error": message, "reason": reason}
    return JSONResponse(body, status_code=status, headers=headers)
