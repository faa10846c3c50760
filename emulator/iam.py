"""The IAM token endpoint over HTTP, and its test knob `/_emulator/principals`.

Served bare (`/service-principals/oauth2/token`, as a token endpoint override names it) and
under Sakura's own prefix (`/cloud/api/iam/1.0`). The request goes through the same knobs as
Secret Manager's calls (counted as `token`, delayed, rate-limited, faulted), since Sakura's
quota and outages reach the exchange too; every refusal is RFC 7807 problem JSON, as the
published definition says (tests/contract checks it against iam-token-openapi.json).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.knobs import Knobs
from emulator.principals import Principals, Refused

TOKEN_PATH = "/service-principals/oauth2/token"  # noqa: S105 (a path, not a password)
IAM_PREFIX = "/cloud/api/iam/1.0"
MAX_FORM_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"


def iam_routes(knobs: Knobs, principals: Principals) -> list[Route]:
    async def token(request: Request) -> Response:
        knobs.count("token")
        if knobs.latency > 0:
            await asyncio.sleep(knobs.latency)
        response = _gate(knobs)
        if response is None:
            try:
                form = await _form(request)
                audience = str(request.url.replace(query=""))
                issued = principals.exchange(form, audience)
            except Refused as refused:
                response = _problem(refused)
            except ClientDisconnect:
                response = Response(status_code=499)
            else:
                lifetime = max(0, round(issued.expires_at - principals.clock()))
                expired_at = datetime.fromtimestamp(issued.expires_at, UTC)
                response = JSONResponse(
                    {
                        "access_token": issued.access_token,
                        "token_type": "Bearer",
                        "token_expired_at": expired_at.isoformat(timespec="seconds"),
                        "expires_in": lifetime,
                    },
                    headers={"Cache-Control": "no-store"},
                )
        knobs.record_status(response.status_code)
        return response

    async def get_principals(request: Request) -> Response:
        return JSONResponse(principals.stats())

    async def set_principals(request: Request) -> Response:
        """`{"add": [{"service_principal_id", "kid", "public_key"}], "disable": [kid],
        "enable": [kid], "expire_tokens": true, "token_lifetime": 60}`."""
        try:
            data = json.loads(await request.body())
            for key in data.get("add", []):
                principals.add_key(
                    str(key["service_principal_id"]), str(key["kid"]), str(key["public_key"])
                )
            for kid in data.get("disable", []):
                principals.set_enabled(str(kid), False)
            for kid in data.get("enable", []):
                principals.set_enabled(str(kid), True)
            if "token_lifetime" in data:
                principals.token_lifetime = max(1.0, float(data["token_lifetime"]))
            if data.get("expire_tokens"):
                principals.expire_tokens()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return JSONResponse(
                {
                    "error": "expected {'add': [{'service_principal_id', 'kid', 'public_key'}], "
                    f"'disable': [kid], 'enable': [kid], 'expire_tokens', 'token_lifetime'}}: "
                    f"{type(exc).__name__} {exc}"
                },
                status_code=400,
            )
        return await get_principals(request)

    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(IAM_PREFIX + TOKEN_PATH, token, methods=["POST"]),
        Route("/_emulator/principals", get_principals, methods=["GET"]),
        Route("/_emulator/principals", set_principals, methods=["POST"]),
    ]


def _gate(knobs: Knobs) -> Response | None:
    """The rate limit, then injected faults, in problem form."""
    wait = knobs.admit()
    if wait is not None:
        seconds = max(1, int(wait + 0.999))
        return _problem(
            Refused(429, "throttled", f"too many requests: try again in {seconds} seconds"),
            {"Retry-After": str(seconds)},
        )
    code = knobs.draw_fault()
    if code is not None:
        return _problem(Refused(code, "injected_fault", f"injected fault (HTTP {code})"))
    return None


async def _form(request: Request) -> dict[str, str]:
    """The form's fields (the last of each name), or Refused (400)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise Refused(400, "invalid", f"the body must be {FORM}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(400, "invalid", f"the body is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "invalid", "the body is not a URL-encoded form") from None
    return {name: values[-1] for name, values in fields.items()}


def _problem(refused: Refused, headers: dict[str, str] | None = None) -> JSONResponse:
    """Problem JSON, served as `application/json` as the published definition declares."""
    return JSONResponse(
        refused.problem(),
        status_code=refused.status,
        headers=headers,
    )
