"""The attacker of benchmarks/hostile.py: issue 15's load attacks, run in their own process.

Each attack keeps its connections or requests going, reopening what the injector closes, until
the benchmark sets `stop`; it says "ready" once its connections are open and sends back a
tally of what the injector answered. Every connection comes from 127.0.0.2, so a per-address
share of the injector's connections tells the attacker from the victim (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

VAULT_A = "110000000001"
VAULT_B = "110000000002"
BLOB = "blob"
"""64 KiB of control characters: JSON writes each as a six-byte escape."""
AUDIENCE = "sakura-secrets-injector"
ATTACKER_ADDRESS = "127.0.0.2"
TCP_ESTABLISHED = 1
"""Linux's tcpi_state of an open connection (the first byte of TCP_INFO)."""
MAX_REVIEW_BYTES = 3 * 1024 * 1024
"""The webhook's body limit (injector.serving.app): the bombs stay just under it."""


def fetch_body(vault: str, names: list[str], version: int | None = None) -> dict[str, Any]:
    return {"vault_id": vault, "secrets": [{"name": n, "version": version} for n in names]}


@dataclass(frozen=True)
class Spec:
    """What the attacker process needs (picklable)."""

    attack: str
    webhook: str
    broker: str
    ca_pem: bytes
    tenant_token: str
    tenant_namespace: str
    nogrant_token: str
    idle: int
    silent: int
    unread: int
    bombs: int
    flood: int
    cpu: int | None = None
    """The CPU the attacker runs on (None: wherever the benchmark's process may run)."""


def attacker_main(spec: Spec, pipe: Connection, stop: Any) -> None:
    """Entry of the attacker process: run until `stop` is set, then send its tally.

    The attacker stands in for pods on other machines: its own client work is niced, on the CPU
    the benchmark chose (`cpu`: the victim client's by default, or the injector's).
    """
    if spec.cpu is not None:
        os.sched_setaffinity(0, {spec.cpu})
    os.nice(19)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tally = asyncio.run(Attacker(spec, pipe, stop).run())
    pipe.send(tally)


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Attacker:
    def __init__(self, spec: Spec, pipe: Connection, stop: Any) -> None:
        self.spec = spec
        self.pipe = pipe
        self.stop_event = stop
        self.tls = ssl.create_default_context(cadata=spec.ca_pem.decode())
        self.tally: dict[str, int] = {}
        self.stopping = asyncio.Event()
        self.announced = False

    def count(self, what: str, n: int = 1) -> None:
        self.tally[what] = self.tally.get(what, 0) + n

    async def run(self) -> dict[str, int]:
        attack: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "idle-tls": self.idle_tls,
            "silent": self.silent,
            "huge-answer": self.huge_answer,
            "mutate-bombs": self.mutate_bombs,
            "kube-flood": self.kube_flood,
        }
        task = asyncio.create_task(attack[self.spec.attack]())
        await asyncio.get_running_loop().run_in_executor(None, self.stop_event.wait)
        self.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return self.tally

    def ready(self) -> None:
        """Tell the benchmark the attack is in place (once, however many parts it has)."""
        if not self.announced:
            self.announced = True
            self.pipe.send("ready")

    async def _many(self, n: int, one: Callable[[], Awaitable[None]], ramp: float = 3.0) -> None:
        """`n` copies of `one`, each started again when it ends; ready once `n` connections
        are open (or after `ramp` seconds)."""

        async def forever() -> None:
            while not self.stopping.is_set():
                try:
                    await one()
                except (OSError, ssl.SSLError, asyncio.IncompleteReadError, httpx.HTTPError):
                    self.count("errors")
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(forever()) for _ in range(n)]
        ready_by = time.monotonic() + ramp
        while self.tally.get("connections", 0) < n and time.monotonic() < ready_by:
            await asyncio.sleep(0.05)
        self.ready()
        await asyncio.gather(*tasks)

    async def _connect(
        self, url: str, *, tls: bool, rcvbuf: int = 0
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = _host_port(url)
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((ATTACKER_ADDRESS, 0))
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        opened = await asyncio.open_connection(
            sock=sock, ssl=self.tls if tls else None, server_hostname=host if tls else None
        )
        self.count("connections")
        return opened

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wait until the server closes (or the attack ends) without sending anything."""
        try:
            while await reader.read(65536):
                pass
            self.count("closed by server")
        finally:
            writer.transport.abort()

    async def idle_tls(self) -> None:
        async def one() -> None:
            await self._hold(*await self._connect(self.spec.broker, tls=True))

        await self._many(self.spec.idle, one)

    async def silent(self) -> None:
        async def one() -> None:
            await self._hold(*await self._connect(self.spec.broker, tls=False))
            await asyncio.sleep(0.9)

        await self._many(self.spec.silent, one)

    async def huge_answer(self) -> None:
        body = json.dumps(fetch_body(VAULT_A, [BLOB] * 100)).encode()
        request = (
            f"POST /v1/secrets HTTP/1.1\r\nHost: injector\r\n"
            f"Authorization: Bearer {self.spec.tenant_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

        async def one() -> None:
            reader, writer = await self._connect(self.spec.broker, tls=True, rcvbuf=4096)
            try:
                writer.write(request)
                status = await reader.readline()  # the status line, never the body
                self.count(status.decode(errors="replace").strip() or "no answer")
                await self._while_established(writer)
            finally:
                writer.transport.abort()

        await self._many(self.spec.unread, one)

    async def _while_established(self, writer: asyncio.StreamWriter) -> None:
        """Until the attack ends or the server drops the connection (a send deadline), seen in
        the kernel's TCP state: reading to notice would be reading the answer."""
        sock = writer.transport.get_extra_info("socket")
        while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.2)
                return
        self.count("dropped by server")

    def _http(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(verify=self.tls, local_address=ATTACKER_ADDRESS)
        return httpx.AsyncClient(transport=transport, timeout=60)

    async def mutate_bombs(self) -> None:
        leaf = "[" * 60 + "0" + "]" * 60
        count = (MAX_REVIEW_BYTES - 1024) // (len(leaf) + 1)
        body = ('{"a":[' + ",".join([leaf] * count) + "]}").encode()
        async with self._http() as http:

            async def one() -> None:
                answer = await http.post(
                    f"{self.spec.webhook}/mutate",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                self.count(f"HTTP {answer.status_code}")

            await self._many(self.spec.bombs, one, ramp=0.5)

    async def kube_flood(self) -> None:
        claims = {
            "aud": [AUDIENCE],
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": f"system:serviceaccount:{self.spec.tenant_namespace}:app",
            "exp": int(time.time()) + 600,
            "kubernetes.io": {
                "namespace": self.spec.tenant_namespace,
                "serviceaccount": {"name": "app", "uid": str(uuid.uuid4())},
            },
        }
        head = _b64(json.dumps({"alg": "RS256", "kid": "x"}).encode())
        payload = _b64(json.dumps(claims).encode())
        async with self._http() as http:

            async def send(token: str, body: dict[str, Any]) -> None:
                answer = await http.post(
                    f"{self.spec.broker}/v1/secrets",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
                self.count(f"HTTP {answer.status_code}")

            async def garbage() -> None:
                if secrets.randbelow(2):
                    token = secrets.token_hex(32)
                else:  # JWT-shaped, our audience, a made-up signature
                    token = f"{head}.{payload}.{_b64(secrets.token_bytes(256))}"
                await send(token, fetch_body(VAULT_A, ["db"]))

            async def many_names() -> None:
                names = [f"n{secrets.token_hex(6)}" for _ in range(100)]
                await send(self.spec.nogrant_token, fetch_body(VAULT_A, names))

            await asyncio.gather(
                self._many(self.spec.flood, garbage, ramp=0.5),
                self._many(self.spec.flood, many_names, ramp=0.5),
            )
