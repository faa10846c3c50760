"""End to end in broker mode: `python -m sidecar` -> the real broker over TLS -> the emulator.

The broker verifies a real bound ServiceAccount token (TokenReview) and the RBAC grant
(SubjectAccessReview) against the local cluster, exactly as in a pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from support.sidecar_harness import (
    ACCESS_SECRET,
    ACCESS_TOKEN,
    ALL_VALUES,
    API_V1,
    API_V2,
    DB,
    VAULT,
    Tls,
    make_plan,
    secret_file,
    snapshot,
    template_file,
)

from contract import SecretVersion
from emulator import Emulator, run_in_thread
from injector.broker.tuning import BrokerTuning
from injector.kube import api_client as kube_api_client
from injector.operations.wiring import BrokerParts, build_broker
from sakura import SakuraConfig
from sidecar import broker_client
from sidecar.config import BrokerSettings
from sidecar.errors import EXIT_CREDENTIALS, EXIT_DENIED

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "sakura-secrets-injector"


@dataclass
class Pod:
    namespace: str
    name: str
    token: str


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    """A namespace, a ServiceAccount allowed to get VAULT/db and VAULT/api (the pairs), and a
    pod its token is bound to."""
    if not os.environ.get("KUBECONFIG"):
        pytest.fail(
            "KUBECONFIG is not set: this test needs a real API server for TokenReview and "
            'SubjectAccessReview. Run scripts/test, or `eval "$(e2e/cluster.sh up)"` first.'
        )
    api = k8s_config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    namespace = f"sidecar-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
        )
        rules = [
            k8s.V1PolicyRule(
                api_groups=["sakura-secrets.io"],
                resources=[resource],
                resource_names=names,
                verbs=["get"],
            )
            for resource, names in (
                ("vaults", [VAULT]),
                ("secrets", [f"{VAULT}/db", f"{VAULT}/api"]),
            )
        ]
        rbac.create_namespaced_role(
            namespace, k8s.V1Role(metadata=k8s.V1ObjectMeta(name="read"), rules=rules)
        )
        rbac.create_namespaced_role_binding(
            namespace,
            k8s.V1RoleBinding(
                metadata=k8s.V1ObjectMeta(name="read"),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read"
                ),
                subjects=[
                    k8s.RbacV1Subject(kind="ServiceAccount", name="app", namespace=namespace)
                ],
            ),
        )
        body = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="app"),
            spec=k8s.V1PodSpec(
                service_account_name="app",
                automount_service_account_token=False,
                containers=[k8s.V1Container(name="app", image="local/busybox:1")],
            ),
        )
        give_up = time.monotonic() + 30
        while True:
            try:
                created = core.create_namespaced_pod(namespace, body)
                break
            except ApiException as exc:  # the ServiceAccount may not be visible yet
                if exc.status != 403 or time.monotonic() > give_up:
                    raise
                time.sleep(0.2)
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[AUDIENCE],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name="app", uid=created.metadata.uid
                ),
            )
        )
        answer = core.create_namespaced_service_account_token("app", namespace, request)
        yield Pod(namespace=namespace, name="app", token=str(answer.status.token))
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


@pytest.fixture
def real_broker_url(sakura_url: str, tls: Tls) -> Iterator[str]:
    with _serve(sakura_url, tls, None) as (url, _):
        yield url


@contextlib.contextmanager
def _serve(
    sakura_url: str, tls: Tls, settings: BrokerTuning | None
) -> Iterator[tuple[str, BrokerParts]]:
    parts = build_broker(
        SakuraConfig(ACCESS_TOKEN, ACCESS_SECRET, base_url=sakura_url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        tuning=settings,
        registry=CollectorRegistry(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await parts.aclose()

    app = Starlette(routes=parts.routes, lifespan=lifespan)
    with run_in_thread(app, ssl_certfile=tls.certfile, ssl_keyfile=tls.keyfile) as url:
        yield url, parts


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "sidecar"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(pod: Pod, real_broker_url: str, tls: Tls, tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(pod.token)
    return {
        "SAKURA_SECRETS_BROKER_URL": real_broker_url,
        "SAKURA_SECRETS_BROKER_CA": tls.ca.cert_pem.decode(),
        "SAKURA_SECRETS_TOKEN_FILE": str(token_file),
        "SAKURA_SECRETS_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "SAKURA_SECRETS_DEADLINE": "20",
    }


def test_granted_secrets_are_fetched_through_the_real_broker(
    env: dict[str, str], emulator: Emulator, secrets_dir: Path, tmp_path: Path
) -> None:
    plan = make_plan(
        secrets_dir,
        secret_file("api", "api"),
        secret_file("api-v1", "api@1"),
        template_file("db.conf", 'user={{ secret("db#user") }}\npass={{ secret("db#pass") }}\n'),
        mode="broker",
    )
    done = _run({**env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert done.returncode == 0, done.stderr
    assert (secrets_dir / "api").read_text() == API_V2
    assert (secrets_dir / "api-v1").read_text() == API_V1
    assert (secrets_dir / "db.conf").read_text() == f"user={DB['user']}\npass={DB['pass']}\n"
    record = json.loads((secrets_dir / ".sakura-secrets.json").read_text())
    assert [(s["name"], s["version"]) for s in record["secrets"]] == [
        ("api", 2),
        ("api", 1),
        ("db", 1),
    ]
    assert not (tmp_path / "termination-log").exists()
    for value in ALL_VALUES:
        assert value not in done.stderr + done.stdout


def test_a_secret_without_a_grant_is_forbidden_and_nothing_is_written(
    env: dict[str, str], pod: Pod, emulator: Emulator, secrets_dir: Path, tmp_path: Path
) -> None:
    (secrets_dir / "api").write_text("from before")
    before = snapshot(secrets_dir)
    plan = make_plan(
        secrets_dir, secret_file("api", "api"), secret_file("plain", "plain"), mode="broker"
    )
    done = _run({**env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert done.returncode == EXIT_DENIED
    lines = (tmp_path / "termination-log").read_text().splitlines()
    assert lines == [
        f"sakura-secrets-init: forbidden: serviceaccount {pod.namespace}/app may not get "
        f'sakura-secrets.io secrets "{VAULT}/plain"; grant it with a Role/RoleBinding (verb '
        f"get, apiGroup sakura-secrets.io, resource secrets, resourceName {VAULT}/plain), e.g. "
        "the rule {apiGroups: [sakura-secrets.io], resources: [secrets], resourceNames: "
        f'["{VAULT}/plain"], verbs: [get]}}'
    ]
    assert snapshot(secrets_dir) == before
    assert emulator.knobs.calls["unveil"] == 0, "nothing is read from Sakura for a denied pod"
    for value in ALL_VALUES:
        assert value not in done.stderr + done.stdout


def test_a_token_for_another_audience_is_unauthenticated(
    env: dict[str, str], pod: Pod, secrets_dir: Path, tmp_path: Path
) -> None:
    Path(env["SAKURA_SECRETS_TOKEN_FILE"]).write_text("not-a-kubernetes-token")
    plan = make_plan(secrets_dir, secret_file("api", "api"), mode="broker")
    done = _run({**env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert done.returncode == EXIT_DENIED
    line = (tmp_path / "termination-log").read_text()
    assert line.startswith("sakura-secrets-init: unauthenticated: ")
    assert "secrets api were not fetched" in line
    assert list(secrets_dir.iterdir()) == []


def test_the_init_container_waits_out_a_429_and_its_retry_after_then_fetches(
    pod: Pod, sakura_url: str, tls: Tls, secrets_dir: Path, tmp_path: Path
) -> None:
    """Its namespace already has as many reads waiting for Sakura as the broker allows."""
    settings = BrokerTuning(rate_burst=2, waiting_per_namespace=1, sakura_deadline=120)
    with _serve(sakura_url, tls, settings) as (url, parts):
        limiter = parts.sakura.limiter
        context = ssl.create_default_context(cadata=tls.ca.cert_pem.decode())
        with httpx.Client(verify=context, timeout=60) as http:  # the vault's listing, shared by
            listed = http.post(  # every read of it, first: each read below waits for an unveil
                f"{url}/v1/secrets",
                json={"vault_id": VAULT, "secrets": [{"name": "db", "version": 99}]},
                headers={"Authorization": f"Bearer {pod.token}"},
            )
        assert listed.status_code == 404, listed.text  # known from the listing alone
        limiter.hold_off(20)  # as after Sakura's own 429: reads wait in their namespace's line
        first: list[httpx.Response] = []

        def waiting_read() -> None:
            with httpx.Client(verify=context, timeout=120) as http:
                first.append(
                    http.post(
                        f"{url}/v1/secrets",
                        json={"vault_id": VAULT, "secrets": [{"name": "db", "version": None}]},
                        headers={"Authorization": f"Bearer {pod.token}"},
                    )
                )

        thread = threading.Thread(target=waiting_read)
        thread.start()
        give_up = time.monotonic() + 30
        while limiter.waiting(pod.namespace) < 1:
            assert time.monotonic() < give_up, "the first read never reached the limiter"
            time.sleep(0.01)

        slept: list[float] = []

        def sleep(seconds: float) -> None:  # the Retry-After passes: the line moves on
            slept.append(seconds)
            for _ in range(500):
                limiter.refund()
            limiter.dispatch()

        token_file = tmp_path / "token"
        token_file.write_text(pod.token)
        plan = make_plan(secrets_dir, secret_file("api", "api"), mode="broker")
        values = broker_client.fetch(
            plan,
            BrokerSettings(url=url, ssl_context=context, token_file=token_file),
            deadline=60,
            sleep=sleep,
        )
        thread.join(timeout=60)
    assert values[SecretVersion("api", None)].value == API_V2
    assert len(slept) == 1 and 1 <= slept[0] <= 20  # the broker's Retry-After, not a guess
    assert first[0].status_code == 200


def test_a_key_sakura_rejects_fails_at_once_with_its_own_exit_code(
    env: dict[str, str], emulator: Emulator, secrets_dir: Path, tmp_path: Path
) -> None:
    accepted = emulator.config.access_token_secret
    emulator.config.access_token_secret = "rotated-away"  # the injector's key is revoked
    try:
        plan = make_plan(secrets_dir, secret_file("api", "api"), mode="broker")
        done = _run({**env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    finally:
        emulator.config.access_token_secret = accepted
    assert done.returncode == EXIT_CREDENTIALS
    line = (tmp_path / "termination-log").read_text()
    assert line.startswith(
        "sakura-secrets-init: credentials rejected: Sakura rejected the injector's credentials"
    )
    assert "secrets api were not fetched" in line
    calls = (emulator.knobs.calls["list_secrets"], emulator.knobs.calls["unveil"])
    assert calls == (1, 0), "not retried until the deadline (the vault's listing was refused)"
    assert list(secrets_dir.iterdir()) == []


def test_refresh_rounds_through_the_real_broker_keep_the_current_set(
    env: dict[str, str], emulator: Emulator, secrets_dir: Path
) -> None:
    """The refresh container's request (latest versions only, with the versions held) is one the
    real broker serves; its answer, `unchanged` items or the same versions, switches nothing."""
    from sidecar import __main__ as init
    from sidecar import config, sources
    from sidecar.refresh import Refresher

    plan = make_plan(
        secrets_dir,
        secret_file("api", "api"),
        secret_file("api-v1", "api@1"),
        template_file("db.conf", 'user={{ secret("db#user") }}'),
        mode="broker",
        refresh_interval=10,
    )
    full = {**env, "SAKURA_SECRETS_PLAN": plan.to_json()}
    init.run(full)
    loaded = os.readlink(secrets_dir / "..data")
    refresher = Refresher(plan, sources.of(config.load(full), deadline=20.0), draw=lambda: 0.5)
    assert [refresher.round() for _ in range(3)] == [10.0, 10.0, 10.0]
    assert os.readlink(secrets_dir / "..data") == loaded
    record = json.loads((secrets_dir / ".sakura-secrets.json").read_text())
    assert (record["set"], record["consecutive_failures"], record["last_error"]) == (
        loaded,
        0,
        None,
    )
    assert (secrets_dir / "api").read_text() == API_V2
