"""The injector as `serve` runs it (webhook, broker, real checks, uvicorn over TLS) keeps
answering `/healthz` and the broker while the largest reviews it admits are being worked on.

A review's CPU work runs off the event loop. Were it on the loop, nothing else could be
answered while it runs: only between two reviews would a probe get through. The test counts
what gets through while the reviews are in flight instead of timing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.broker_world import VALUES, VAULT, World, sakura_config
from support.emulator import EmulatorHandle

from contract.template import template_tokens
from injector.kube import api_client as kube_api_client
from injector.operations.reviews import pod_create_review
from injector.operations.wiring import build_broker
from injector.serving.app import MAX_REVIEW_BYTES, create_apps
from injector.serving.review_queue import MAX_VALUES
from injector.serving.server import Listener, serving_in_thread
from injector.serving.tls import ReloadingTLS
from injector.webhook.annotations import MAX_FILES, MAX_TEMPLATE_TOKENS
from injector.webhook.settings import WebhookSettings

pytestmark = pytest.mark.cluster

P = "sakura-secrets.io/"
REVIEWS = 12
ARGS = MAX_VALUES - 5_000
"""Container arguments: a review of almost 3 MiB, the most the injector reads, whose JSON has
as many values as the screen lets through (each costs work to check)."""
ARG_BYTES = 26
"""Each argument's length: the arguments fill the body up to almost 3 MiB."""
STREAMS = 4


@contextlib.contextmanager
def serve_injector(emulator_url: str, tls: tuple[Path, Path, bytes]) -> Iterator[Any]:
    """`create_apps` with the broker's routes and admission check, on two ports as `serve`
    wires them; yields the webhook's URL, the broker's and the TLS context."""
    registry = CollectorRegistry()
    parts = build_broker(
        sakura_config(emulator_url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        registry=registry,
    )
    cert, key, ca_pem = tls
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca_pem.decode(),
        default_vault_id=VAULT,
    )
    apps = create_apps(settings, check=parts.check, routes=parts.routes, registry=registry)
    tls_files = ReloadingTLS(cert, key)
    listeners = [
        Listener("webhook", apps.webhook, tls_files, 0),
        Listener("broker", apps.broker, tls_files, 0),
    ]
    with serving_in_thread(listeners, shutdown=[parts.aclose]) as (webhook, broker):
        yield webhook, broker, ssl.create_default_context(cadata=ca_pem.decode())


def largest_review(namespace: str, uid: str) -> bytes:
    """A pod at every annotation bound (the whole template budget, the most files) in a review
    of almost the 3 MiB the injector reads: all of it granted and existing."""
    tail = '{% set x = secret("db") %}'
    template = "{{x}}" * ((MAX_TEMPLATE_TOKENS - template_tokens(tail, 100)) // 3) + tail
    annotations = {f"{P}inject": "true", f"{P}template-config": template}
    annotations.update({f"{P}secret-f{i:03}": f"api#k{i}" for i in range(MAX_FILES - 1)})
    args = ["-" + "v" * (ARG_BYTES - 1)] * ARGS
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "big-", "annotations": annotations},
        "spec": {
            "serviceAccountName": "app",
            "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "app", "image": "shop/api:1", "args": args}],
        },
    }
    body = json.dumps(pod_create_review(pod, namespace=namespace, uid=uid)).encode()
    assert len(body) < MAX_REVIEW_BYTES
    return body


async def test_health_and_broker_answer_while_the_largest_reviews_are_worked_on(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    bodies = [largest_review(world.ns_a, f"big-{i}") for i in range(REVIEWS)]
    fetch = json.dumps({"vault_id": VAULT, "secrets": [{"name": "db", "version": None}]})
    with serve_injector(emulator.url, tls_files) as (url, broker_url, context):
        async with httpx.AsyncClient(verify=context, timeout=120) as http:

            async def broker_fetch() -> None:
                answer = await http.post(
                    f"{broker_url}/v1/secrets",
                    content=fetch,
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["secrets"][0]["value"] == VALUES["db"][1]

            async def healthz() -> None:
                answer = await http.get(f"{broker_url}/healthz")
                assert answer.status_code == 200

            first = await http.post(f"{url}/mutate", content=bodies[0])  # warm: checks cached
            assert first.json()["response"]["allowed"], first.text
            await broker_fetch()

            pending = list(bodies)
            in_flight = 0
            answered = {"healthz": 0, "broker": 0}

            async def stream() -> None:
                nonlocal in_flight
                while pending:
                    body = pending.pop()
                    in_flight += 1
                    try:
                        answer = await http.post(f"{url}/mutate", content=body)
                    finally:
                        in_flight -= 1
                    response = answer.json()["response"]
                    assert response["allowed"] and "patch" in response, answer.text

            async def probe(what: str, ask: Callable[[], Awaitable[None]]) -> None:
                await asyncio.sleep(0.05)  # the reviews are on their way
                while in_flight:
                    await ask()
                    answered[what] += bool(in_flight)

            await asyncio.gather(
                *(stream() for _ in range(STREAMS)),
                probe("healthz", healthz),
                probe("broker", broker_fetch),
            )
    print(f"answered while {REVIEWS} reviews were in flight: {answered}")
    # on the loop, a probe gets through only between two reviews: about one per review (the
    # code before the offload: 2 and 1; with the offload removed again: 16 and 7). Off it,
    # 50 to 150 healthz and 30 to 100 broker answers, fewer the busier the machine
    assert answered["healthz"] >= 2 * REVIEWS, answered
    assert answered["broker"] >= 3 * REVIEWS // 2, answered
