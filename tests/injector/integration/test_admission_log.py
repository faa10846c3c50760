"""The admission line and the denial Event, from the real app served by uvicorn over TLS: one
JSON line per review (allowed, denied, malformed, failed) with the fields docs/operations.md
lists, and a denial's Event on the pod's controller."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clock import HandClock
from support.event_fakes import RecordingEventsApi
from support.webhook_harness import (
    RecordingCheck,
    admission_review,
    loopback_injector,
    pod,
    serving,
)

from injector.event_recorder import EventRecorder
from injector.operations.certs import KeyPair, generate_ca
from injector.operations.log_format import JsonFormatter
from injector.serving.app import create_apps

RS = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "web-6d4cf56db6",
    "uid": "5b1f2f0e-0000-4000-8000-000000000001",
    "controller": True,
}


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


class Served:
    def __init__(self, url: str, ca: KeyPair, events: EventRecorder, api: RecordingEventsApi):
        self.url, self.events, self.api = url, events, api
        self.context = ssl.create_default_context(cadata=ca.cert_pem.decode())

    def post(self, body: bytes) -> httpx.Response:
        with httpx.Client(verify=self.context, timeout=10) as client:
            return client.post(f"{self.url}/mutate", content=body)


def serve(tmp_path: Path, ca: KeyPair, check: RecordingCheck) -> Iterator[Served]:
    settings, tls = loopback_injector(tmp_path, ca)
    api = RecordingEventsApi()
    events = EventRecorder(api, instance="injector-0", clock=HandClock(), tick=3600)
    apps = create_apps(settings, check=check, events=events)
    with serving(apps, tls) as ports:
        yield Served(ports.webhook, ca, events, api)


@pytest.fixture
def served(tmp_path: Path, ca: KeyPair) -> Iterator[Served]:
    yield from serve(tmp_path, ca, RecordingCheck(denied=frozenset({"db-password"})))


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The admission lines as the JSON formatter writes them, parsed back."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r)) for r in caplog.records if r.name == "injector.admission"
    ]


def replica(**metadata: Any) -> dict[str, Any]:
    """The sample pod as a ReplicaSet makes it: no name yet, a generateName and its owner."""
    made = pod()
    del made["metadata"]["name"]
    made["metadata"].update(generateName="web-6d4cf56db6-", ownerReferences=[RS], **metadata)
    return made


def test_a_denied_pod_is_one_line_with_its_owner_and_reason_and_an_event_on_its_replicaset(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = served.post(admission_review(replica(), uid="uid-denied")).json()["response"]
    assert answer["allowed"] is False
    [line] = lines(caplog)
    assert line["level"] == "warning" and line["logger"] == "injector.admission"
    assert line["time"].endswith("Z") and line["time"][10] == "T"
    latency = line.pop("latency_ms")
    assert isinstance(latency, float) and latency > 0
    assert {k: v for k, v in line.items() if k not in ("time", "level", "logger")} == {
        "message": "admission denied: shop/web-6d4cf56db6-*",
        "namespace": "shop",
        "pod": "web-6d4cf56db6-*",
        "owner": "ReplicaSet/web-6d4cf56db6",
        "uid": "uid-denied",
        "outcome": "denied",
        "reason": "unauthorized",
        "code": 403,
        "warnings": 0,
    }
    assert served.api.created == []  # queued: the writer's turn (a tick later) has not come
    asyncio.run(served.events.flush())
    [event] = served.api.created
    assert event["regarding"] == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "namespace": "shop",
        "name": "web-6d4cf56db6",
        "uid": RS["uid"],
    }
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web-6d4cf56db6.")
    assert (event["reason"], event["action"], event["type"]) == (
        "SecretsDenied",
        "Admit",
        "Warning",
    )
    assert event["note"] == (
        "unauthorized (403): pod web-6d4cf56db6-*: serviceaccount may not get db-password"
    )
    assert (event["reportingController"], event["reportingInstance"]) == (
        "sakura-secrets.io/injector",
        "injector-0",
    )


def test_an_injected_and_a_skipped_pod_are_one_line_each_and_no_event(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    allowed = pod({"sakura-secrets.io/secret-db": "other@3"})
    assert served.post(admission_review(allowed, uid="uid-ok")).json()["response"]["allowed"]
    plain = pod({"sakura-secrets.io/inject": "false"})
    assert served.post(admission_review(plain, uid="uid-skip")).json()["response"]["allowed"]
    injected, skipped = lines(caplog)
    assert (injected["level"], skipped["level"]) == ("info", "info")
    assert {k: injected[k] for k in ("uid", "pod", "owner", "outcome", "reason", "code")} == {
        "uid": "uid-ok",
        "pod": "web",
        "owner": "",
        "outcome": "injected",
        "reason": "injected",
        "code": 200,
    }
    assert {k: skipped[k] for k in ("uid", "outcome", "reason", "code", "warnings")} == {
        "uid": "uid-skip",
        "outcome": "skipped",
        "reason": "opted-out",
        "code": 200,
        "warnings": 0,
    }
    asyncio.run(served.events.flush())
    assert served.api.created == []


def test_a_malformed_body_is_one_line_with_its_code(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert served.post(b'{"kind": "AdmissionReview"').status_code == 400
    [line] = lines(caplog)
    assert (line["outcome"], line["code"], line["level"]) == ("malformed", 400, "warning")
    assert "uid" not in line and "pod" not in line


def test_an_internal_failure_is_one_line_with_the_traceback(
    tmp_path: Path, ca: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for served in serve(tmp_path, ca, RecordingCheck(explode=True)):
        answer = served.post(admission_review(pod(), uid="uid-boom")).json()["response"]
        assert answer["status"]["code"] == 500
    [line] = lines(caplog)
    assert (line["uid"], line["namespace"], line["outcome"], line["reason"], line["code"]) == (
        "uid-boom",
        "shop",
        "error",
        "internal",
        500,
    )
    assert line["level"] == "error" and "RuntimeError: kaboom" in line["exception"]
