"""`--native-sidecars`: the decision from the API server's version, the timer that follows
it, the flag, and the local 1.20 API server, which answers 1.20 (plain shape) and accepts the
plain shape's pod, while it silently drops a native sidecar's `restartPolicy` (why `auto`
must never guess native on an old cluster).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from support.admission_harness import P, pod, run, settings
from support.cli_kit import Versions, run_injector

from injector.kube import api_client, server_version
from injector.operations.cli import build_parser
from injector.operations.commands.serve import native_sidecars_from_args
from injector.operations.errors import UsageError
from injector.operations.flags import settings_from_args
from injector.operations.native_sidecars import NativeSidecars, native_from_version

REFRESH = "sakura-secrets-refresh"


@pytest.mark.parametrize(
    ("major", "minor", "native"),
    [
        ("1", "28", False),
        ("1", "29", True),
        ("1", "30", True),
        ("1", "28+", False),
        ("1", "29+", True),
        ("1", "30+", True),
        (" 1", "29-gke.1", True),
        ("1", "20", False),
        ("1", "9", False),
        ("1", "100", True),
        ("2", "0", True),
        ("0", "99", False),
    ],
)
def test_native_sidecars_from_1_29_whatever_a_managed_cluster_appends(
    major: str, minor: str, native: bool
) -> None:
    assert native_from_version(major, minor) is native


@pytest.mark.parametrize(("major", "minor"), [("", "29"), ("1", ""), ("v1", "29"), ("1", "+")])
def test_a_version_that_is_not_numbers_is_refused(major: str, minor: str) -> None:
    with pytest.raises(ValueError, match=r"is not MAJOR\.MINOR"):
        native_from_version(major, minor)


def test_unreadable_at_start_up_is_the_plain_shape_said_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    versions = Versions(TimeoutError("the API server did not answer"))
    watch = NativeSidecars(versions)
    with caplog.at_level(logging.INFO, "injector.operations.native_sidecars"):
        assert watch.refresh() is False
        assert watch.refresh() is False  # said once per failing streak
    assert watch() is False and watch.version is None
    assert [r.getMessage() for r in caplog.records] == [
        "cannot read the Kubernetes API server's version (TimeoutError: the API server did not "
        "answer); the refresh container stays a plain container (classic shape) until it can "
        "(--native-sidecars=auto; set always or never to decide without it)"
    ]


def test_an_upgrade_is_followed_and_a_later_failure_keeps_the_last_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    versions = Versions(("1", "28"))
    watch = NativeSidecars(versions)
    with caplog.at_level(logging.INFO, "injector.operations.native_sidecars"):
        assert watch.refresh() is False
        assert watch.refresh() is False  # the same version: said once
        versions.answer = ("1", "29+")
        assert watch.refresh() is True
        assert watch() is True and watch.version == "1.29+"
        versions.answer = ConnectionRefusedError("refused")
        assert watch.refresh() is True
        versions.answer = ("1", "wat")  # unparsable: like unreadable
        assert watch.refresh() is True
        versions.answer = ("1", "29+")
        assert watch.refresh() is True
    assert [r.getMessage() for r in caplog.records] == [
        "Kubernetes API server 1.28: the refresh container is a plain container (classic shape)",
        "Kubernetes API server 1.29+: the refresh container is a native sidecar",
        "cannot read the Kubernetes API server's version (ConnectionRefusedError: refused); the "
        "refresh container stays a native sidecar until it can (--native-sidecars=auto; set "
        "always or never to decide without it)",
    ]


def _render_args(*flags: str, env: dict[str, str] | None = None) -> Any:
    return build_parser(env or {}).parse_args(["render", "-f", "-", *flags])


def test_the_flag_auto_always_never_and_its_environment_variable() -> None:
    assert _render_args().native_sidecars == "auto"
    assert settings_from_args(_render_args()).native_sidecars is False  # render: no cluster
    assert settings_from_args(_render_args("--native-sidecars", "always")).native_sidecars
    assert not settings_from_args(_render_args("--native-sidecars", "never")).native_sidecars
    env = {"SAKURA_SECRETS_NATIVE_SIDECARS": "always"}
    assert settings_from_args(_render_args(env=env)).native_sidecars is True
    assert not settings_from_args(
        _render_args("--native-sidecars", "never", env=env)
    ).native_sidecars
    with pytest.raises(UsageError) as caught:
        settings_from_args(_render_args("--native-sidecars", "yes"))
    assert str(caught.value) == "--native-sidecars 'yes' must be one of auto, always, never"


# --- the local cluster (1.20) ---


@pytest.fixture(scope="module")
def kube() -> k8s.ApiClient:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail('KUBECONFIG is not set: run scripts/test, or eval "$(e2e/cluster.sh env)"')
    return api_client()


@pytest.fixture(scope="module")
def namespace(kube: k8s.ApiClient) -> Iterator[str]:
    core = k8s.CoreV1Api(kube)
    name = f"refresh-shape-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name)


@pytest.mark.cluster
def test_the_local_api_server_answers_1_20_so_auto_is_the_plain_shape_on_its_timer(
    kube: k8s.ApiClient,
) -> None:
    reads = threading.Semaphore(0)

    def read() -> tuple[str, str]:
        version = server_version(kube)
        reads.release()
        return version

    watch = NativeSidecars(read, every=0.05)
    watch.start()
    try:
        for _ in range(3):  # the start-up read and two on the timer
            assert reads.acquire(timeout=30)
    finally:
        watch.stop()
    assert watch.version is not None and watch.version.startswith("1.20")
    assert watch() is False


async def _mutated(obj: dict[str, Any], native: bool) -> dict[str, Any]:
    answer = await run(obj, webhook=settings(native_sidecars=native))
    response = answer["response"]
    assert response["allowed"] is True, response
    patch = json.loads(base64.b64decode(response["patch"]))
    mutated: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    return mutated


def _dry_run_create(kube: k8s.ApiClient, namespace: str, obj: dict[str, Any]) -> Any:
    """The pod as the API server would store it (server-side dry run: nothing is created)."""
    core = k8s.CoreV1Api(kube)
    deadline = time.monotonic() + 30
    while True:
        try:
            return core.create_namespaced_pod(namespace, obj, dry_run="All")
        except ApiException as exc:  # the default ServiceAccount (403) or its token (500) may
            if exc.status not in (403, 500) or time.monotonic() > deadline:  # not exist yet
                raise
            time.sleep(0.2)


@pytest.mark.cluster
async def test_the_plain_shape_is_accepted_by_the_real_1_20_api_server(
    kube: k8s.ApiClient, namespace: str
) -> None:
    obj = pod({f"{P}refresh-interval": "10s"})
    stored = _dry_run_create(kube, namespace, await _mutated(obj, native=False))
    assert [c.name for c in stored.spec.init_containers] == ["sakura-secrets-init"]
    assert [c.name for c in stored.spec.containers] == ["app", REFRESH]
    refresh = stored.spec.containers[1]
    assert refresh.command == ["python", "-m", "sidecar", "refresh"]
    assert refresh.security_context.read_only_root_filesystem is True
    assert [(m.name, bool(m.read_only)) for m in refresh.volume_mounts][:2] == [
        ("sakura-secrets", False),
        ("sakura-secrets-token", True),
    ]


@pytest.mark.cluster
async def test_a_1_20_api_server_drops_a_native_sidecars_restart_policy(
    kube: k8s.ApiClient, namespace: str
) -> None:
    """Why `auto` is plain unless the API server says 1.29+: an old one accepts the native
    shape but forgets `restartPolicy: Always`, leaving an init container that never exits."""
    obj = pod({f"{P}refresh-interval": "10s"})
    mutated = await _mutated(obj, native=True)
    assert mutated["spec"]["initContainers"][1]["restartPolicy"] == "Always"
    stored = _dry_run_create(kube, namespace, mutated)
    sidecar = kube.sanitize_for_serialization(stored)["spec"]["initContainers"][1]
    assert sidecar["name"] == REFRESH
    assert "restartPolicy" not in sidecar


@pytest.mark.cluster
def test_serve_watches_the_version_only_for_auto(kube: k8s.ApiClient) -> None:
    def args(mode: str) -> Any:
        flags = ["--tls-cert-file", "/c", "--tls-key-file", "/k", "--native-sidecars", mode]
        return build_parser({}).parse_args(["serve", *flags])

    assert native_sidecars_from_args(args("always"), kube) is None
    assert native_sidecars_from_args(args("never"), kube) is None
    watch = native_sidecars_from_args(args("auto"), kube)
    assert watch is not None
    try:
        assert watch.version is not None and watch.version.startswith("1.20")  # read at start
        assert watch() is False
    finally:
        watch.stop()


REFRESHING_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    sakura-secrets.io/inject: "true"
    sakura-secrets.io/secret-db: db-password
    sakura-secrets.io/vault-id: "123456789012"
    sakura-secrets.io/refresh-interval: 5m
spec:
  containers:
  - name: app
    image: nginx
"""


@pytest.mark.parametrize(
    ("flags", "native"), [((), False), (("--native-sidecars", "always"), True)]
)
def test_render_previews_the_plain_shape_unless_told_native(
    flags: tuple[str, ...], native: bool
) -> None:
    result = run_injector("render", "-f", "-", *flags, stdin=REFRESHING_POD)
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(result.stdout)["spec"]  # the `# warning:` lines are comments
    init = [c["name"] for c in spec["initContainers"]]
    apps = [c["name"] for c in spec["containers"]]
    if native:
        assert (init, apps) == (["sakura-secrets-init", REFRESH], ["app"])
        assert spec["initContainers"][1]["restartPolicy"] == "Always"
    else:
        assert (init, apps) == (["sakura-secrets-init"], ["app", REFRESH])
