"""No credential or secret value in any log line, exception text or repr the client produces."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from support.sakura_kit import (
    API_JSON,
    DB_PASSWORD_V1,
    DB_PASSWORD_V2,
    SECRET,
    TOKEN,
    VAULT,
    MakeClient,
)

from emulator import Emulator, Fault
from sakura import SakuraClient, SakuraConfig, SakuraError

CREATED = "created-value-Hq7-never-log"


def forbidden() -> list[str]:
    basic = base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()
    return [TOKEN, SECRET, basic, DB_PASSWORD_V1, DB_PASSWORD_V2, str(API_JSON["token"]), CREATED]


async def test_nothing_secret_in_logs_or_errors(
    make_client: MakeClient, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "httpx", "httpcore", "sakura"):
        caplog.set_level(logging.DEBUG, logger=name)
    errors: list[BaseException] = []

    async def expect_error(call: object) -> None:
        try:
            await call  # type: ignore[misc]
        except SakuraError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected an error")

    async with make_client() as c:
        objects: list[object] = [c, c.config, await c.unveil(VAULT, "db-password")]
        objects.append(await c.unveil(VAULT, "api"))
        objects.append(await c.create(VAULT, "made", CREATED))
        await expect_error(c.unveil(VAULT, "missing"))
        await expect_error(c.unveil(VAULT, "db-password", 9))
        emu.knobs.fail_next(503, 2)
        objects.append(await c.unveil(VAULT, "db-password"))
        emu.knobs.set_faults([Fault(500, 1.0)])
        await expect_error(c.create(VAULT, "made", CREATED))
        await expect_error(c.unveil(VAULT, "db-password"))
        emu.knobs.set_faults([])
    async with make_client(secret="not-" + SECRET) as c:
        await expect_error(c.unveil(VAULT, "db-password"))
    async with make_client(base_url="http://127.0.0.1:9", deadline=0.2) as c:
        await expect_error(c.create(VAULT, "made", CREATED))

    # A server that echoes what it got, and one that answers with a malformed value.
    def echo(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/unveil"):
            return httpx.Response(200, text=f"<html>{DB_PASSWORD_V2}</html>")
        return httpx.Response(400, json={"error": f"bad body {request.content.decode()}"})

    config = SakuraConfig(TOKEN, SECRET, base_url="http://sakura.invalid")
    async with SakuraClient(config, transport=httpx.MockTransport(echo)) as c:
        await expect_error(c.create(VAULT, "made", CREATED))
        await expect_error(c.unveil(VAULT, "db-password"))

    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(o) for o in objects]
    texts += [str(e.__cause__) for e in errors if e.__cause__] + [
        str(e.__context__) for e in errors if e.__context__
    ]
    assert len(errors) == 8
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # really at DEBUG
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    for text in texts:
        for value in forbidden():
            assert value not in text, f"{value[:4]}... leaked into: {text[:120]}"
