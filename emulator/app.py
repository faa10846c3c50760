"""The emulator's HTTP application: Sakura's Secret Manager API in memory, plus test knobs.

API paths are served both bare (like the official mock) and under
`/cloud/zone/{zone}/api/cloud/1.1` (like production). Knobs and counters live under
`/_emulator/`, outside the API, without authentication.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from emulator.iam import iam_routes
from emulator.keys import Keys
from emulator.knobs import Fault, Knobs
from emulator.principals import Principals
from emulator.seed import load_seed
from emulator.store import (
    MAX_NAME_LENGTH,
    MAX_VALUE_BYTES,
    SecretNotFound,
    Store,
    VaultNotFound,
)

PREFIX = "/cloud/zone/{zone}/api/cloud/1.1"
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class EmulatorConfig:
    """What the command line sets; tests build one directly."""

    access_token: str
    access_token_secret: str = field(repr=False)
    latency: float = 0.0
    rate_limit: int | None = None
    rate_limit_window: float = 60.0
    faults: list[Fault] = field(default_factory=list)
    fault_seed: int | None = None
    seed: dict[str, Any] | None = None
    token_lifetime: float = 3600.0
    """Seconds a Bearer token from the IAM token endpoint is accepted."""


class BadBody(ValueError):
    """The request body breaks the schema: answered with 400."""


class Emulator:
    """An ASGI app with its store and knobs in reach: `run_in_thread(Emulator(cfg))`."""

    def __init__(self, config: EmulatorConfig, *, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store()
        self.knobs = Knobs(
            latency=self.config.latency,
            rate_limit=self.config.rate_limit,
            rate_limit_window=self.config.rate_limit_window,
            faults=self.config.faults,
            seed=self.config.fault_seed,
        )
        self.keys = Keys()
        """Keys accepted beside the configured one, and revoked ones (`/_emulator/keys`)."""
        self.principals = Principals(token_lifetime=self.config.token_lifetime)
        """Service principals' keys and the Bearer tokens issued (`/_emulator/principals`)."""
        if self.config.seed is not None:
            load_seed(self.config.seed, self.store, self.principals)
        self.app = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def _routes(self) -> list[Route]:
        api: list[tuple[str, str, str, Handler]] = [
            ("/secretmanager/vaults", "GET", "list_vaults", self.list_vaults),
            ("/secretmanager/vaults/{vault_id}", "GET", "get_vault", self.get_vault),
            ("/secretmanager/vaults/{vault_id}/secrets", "GET", "list_secrets", self.list_secrets),
            ("/secretmanager/vaults/{vault_id}/secrets", "POST", "create", self.create),
            ("/secretmanager/vaults/{vault_id}/secrets", "DELETE", "delete", self.delete),
            ("/secretmanager/vaults/{vault_id}/secrets/unveil", "POST", "unveil", self.unveil),
        ]
        routes = [
            Route(prefix + path, self._api(operation, handler), methods=[method])
            for prefix in ("", PREFIX)
            for path, method, operation, handler in api
        ]
        routes += [
            Route("/_emulator/stats", self.get_stats, methods=["GET"]),
            Route("/_emulator/stats", self.reset_stats, methods=["DELETE"]),
            Route("/_emulator/faults", self.get_faults, methods=["GET"]),
            Route("/_emulator/faults", self.set_faults, methods=["POST", "PUT"]),
            Route("/_emulator/knobs", self.set_knobs, methods=["POST", "PUT"]),
            Route("/_emulator/keys", self.get_keys, methods=["GET"]),
            Route("/_emulator/keys", self.set_keys, methods=["POST"]),
        ]
        return routes + iam_routes(self.knobs, self.principals)

    # -- the pipeline every API request goes through -----------------------------------

    def _api(self, operation: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            self.knobs.count(operation)
            if self.knobs.latency > 0:
                await asyncio.sleep(self.knobs.latency)
            response = self._refuse(request)
            if response is None:
                try:
                    response = await handler(request)
                except VaultNotFound:
                    response = _error(404, "vault not found")
                except SecretNotFound as exc:
                    response = _error(404, f'secret "{exc.name}" not found')
                except BadBody as exc:
                    response = _error(400, str(exc))
                except ClientDisconnect:  # the client gave up (its timeout): nobody to answer
                    response = Response(status_code=499)
            self.knobs.record_status(response.status_code)
            return response

        return endpoint

    def _refuse(self, request: Request) -> Response | None:
        """Auth, then the rate limit, then injected faults: the first that applies answers."""
        header = request.headers.get("authorization", "")
        if not self._authorized(header):
            bearer = header[:7].lower() == "bearer "
            return JSONResponse(
                {
                    "is_fatal": True,
                    "serial": "emulator",
                    "status": "401 Unauthorized",
                    "error_code": "unauthorized",
                    "error_msg": "invalid or expired bearer token"
                    if bearer
                    else "invalid access token or secret",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="sakura"'},
            )
        wait = self.knobs.admit()
        if wait is not None:
            return JSONResponse(
                {"error": "too many requests"},
                status_code=429,
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        code = self.knobs.draw_fault()
        if code is not None:
            return _error(code, f"injected fault (HTTP {code})")
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.principals.accepts(encoded.strip())
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        configured = (self.config.access_token, self.config.access_token_secret)
        return bool(sep) and self.keys.accepts(user, password, configured)

    # -- the API ---------------------------------------------------------------------------

    async def list_vaults(self, request: Request) -> Response:
        vaults = [v.to_json() for v in self.store.vaults()]
        return JSONResponse(
            {"Count": len(vaults), "From": 0, "Total": len(vaults), "Vaults": vaults}
        )

    async def get_vault(self, request: Request) -> Response:
        return JSONResponse({"Vault": self.store.vault(request.path_params["vault_id"]).to_json()})

    async def list_secrets(self, request: Request) -> Response:
        items = [
            {"Name": name, "LatestVersion": latest}
            for name, latest in self.store.secrets(request.path_params["vault_id"])
        ]
        return JSONResponse({"Count": len(items), "From": 0, "Total": len(items), "Secrets": items})

    async def create(self, request: Request) -> Response:
        secret = await _secret_body(request)
        name = _name(secret)
        value = secret.get("Value")
        if not isinstance(value, str):
            raise BadBody("Secret.Value must be a string")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise BadBody(f"Secret.Value is longer than {MAX_VALUE_BYTES} bytes")
        version = self.store.put(request.path_params["vault_id"], name, value)
        return JSONResponse({"Secret": {"Name": name, "LatestVersion": version}}, status_code=201)

    async def delete(self, request: Request) -> Response:
        name = _name(await _secret_body(request))
        self.store.delete(request.path_params["vault_id"], name)
        return Response(status_code=204)

    async def unveil(self, request: Request) -> Response:
        secret = await _secret_body(request)
        name = _name(secret)
        version = secret.get("Version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise BadBody("Secret.Version must be an integer or null")
        if version is not None and version < 0:
            raise BadBody("Secret.Version must not be negative")
        got, value = self.store.get(request.path_params["vault_id"], name, version or None)
        return JSONResponse({"Secret": {"Name": name, "Version": got, "Value": value}})

    # -- knobs -----------------------------------------------------------------------------

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.knobs.stats())

    async def reset_stats(self, request: Request) -> Response:
        self.knobs.reset_stats()
        return Response(status_code=204)

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(
            {"faults": [{"code": f.code, "rate": f.rate} for f in self.knobs.faults]}
        )

    async def set_faults(self, request: Request) -> Response:
        """`{"faults": [{"code": 503, "rate": 0.5}], "fail_next": {"code": 503, "count": 2}}`."""
        try:
            data = json.loads(await request.body())
            if "faults" in data:
                self.knobs.set_faults(
                    [Fault(int(f["code"]), float(f["rate"])) for f in data["faults"]]
                )
            if "fail_next" in data:
                nxt = data["fail_next"]
                self.knobs.fail_next(int(nxt["code"]), int(nxt.get("count", 1)))
        except (ValueError, TypeError, KeyError) as exc:
            return _error(400, f"expected {{'faults': [{{'code', 'rate'}}]}}: {exc}")
        return await self.get_faults(request)

    async def set_knobs(self, request: Request) -> Response:
        """`{"latency": 0.5, "rate_limit": 100, "rate_limit_window": 60}` (null: no limit)."""
        try:
            data = json.loads(await request.body())
            if "latency" in data:
                self.knobs.latency = max(0.0, float(data["latency"]))
            if "rate_limit" in data or "rate_limit_window" in data:
                limit = data.get("rate_limit", self.knobs.rate_limit)
                window = data.get("rate_limit_window")
                self.knobs.set_rate_limit(
                    None if limit is None else int(limit), None if window is None else float(window)
                )
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"bad knobs: {exc}")
        return JSONResponse(self.knobs.stats())

    async def get_keys(self, request: Request) -> Response:
        return JSONResponse(self.keys.stats(self.config.access_token))

    async def set_keys(self, request: Request) -> Response:
        """`{"add": [{"access_token": T, "access_token_secret": S}], "revoke": [T]}`; adds
        first, then revokes."""
        try:
            data = json.loads(await request.body())
            for key in data.get("add", []):
                self.keys.add(str(key["access_token"]), str(key["access_token_secret"]))
            for token in data.get("revoke", []):
                self.keys.revoke(str(token))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return _error(
                400,
                f"expected {{'add': [{{'access_token', 'access_token_secret'}}], "
                f"'revoke': [access_token]}}: {type(exc).__name__} {exc}",
            )
        return await self.get_keys(request)


async def _secret_body(request: Request) -> dict[str, Any]:
    """The `Secret` object of a request body, or BadBody."""
    try:
        data = json.loads(await request.body(), parse_constant=_not_json)
        # A lone surrogate escape ("\ud800") parses but is not text: it could not be stored.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, UnicodeDecodeError, UnicodeEncodeError, RecursionError):
        raise BadBody("the body is not JSON of valid UTF-8 text") from None
    if not isinstance(data, dict) or not isinstance(data.get("Secret"), dict):
        raise BadBody('the body must be {"Secret": {...}}')
    secret: dict[str, Any] = data["Secret"]
    return secret


def _not_json(constant: str) -> Any:
    """NaN and Infinity are Python's extension, not JSON."""
    raise json.JSONDecodeError(f"{constant} is not JSON", constant, 0)


def _name(secret: dict[str, Any]) -> str:
    name = secret.get("Name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise BadBody(f"Secret.Name must be a string of 1 to {MAX_NAME_LENGTH} characters")
    return name


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail))
