"""1,000 concurrent fetches of the same 5 secrets through the broker, at Sakura's real quota.

The broker runs on uvicorn over TLS with real TokenReview/SubjectAccessReview against the
cluster in $KUBECONFIG; the emulator plays Sakura with the production quota (100 calls per
60 s). Every fetch presents the same bound token: the broker remembers an accepted review
for up to 300 s by the token's SHA-256 (a production feature), so the API server sees one
TokenReview and six SubjectAccessReviews (the vault and 5 pairs), not thousands.

    KUBECONFIG=/tmp/k8s-local/kubeconfig python -m benchmarks.broker_load [--fetches 1000]

Prints how many Sakura calls were made (goal <= 10; 6: the vault's listing and 5 unveils),
how long until all fetches finished, and how many failed (goal 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert
from injector.operations.wiring import build_broker
from sakura import SakuraConfig

VAULT = "110000000001"
SECRETS = ["db", "api", "cache", "smtp", "tls"]


def prepare_cluster(api: k8s.ApiClient, namespace: str) -> str:
    """A namespace, a ServiceAccount granted the vault and its 5 pairs, a Pending pod, a token."""
    core = k8s.CoreV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
    )
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="read"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=["sakura-secrets.io"],
                    resources=[resource],
                    resource_names=names,
                    verbs=["get"],
                )
                for resource, names in (
                    ("vaults", [VAULT]),
                    ("secrets", [f"{VAULT}/{name}" for name in SECRETS]),  # the pairs
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="read"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read"),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="app", namespace=namespace)],
        ),
    )
    pod_body = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="app"),
        spec=k8s.V1PodSpec(
            service_account_name="app",
            automount_service_account_token=False,
            containers=[k8s.V1Container(name="app", image="local/busybox:1")],
        ),
    )
    for _ in range(100):
        try:
            pod = core.create_namespaced_pod(namespace, pod_body)
            break
        except k8s.ApiException as exc:
            if exc.status != 403:
                raise
            time.sleep(0.2)
    else:
        raise SystemExit("the benchmark's pod could not be created")
    assert pod.metadata is not None
    token = core.create_namespaced_service_account_token(
        "app",
        namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=["sakura-secrets-injector"],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name="app", uid=pod.metadata.uid
                ),
            )
        ),
    )
    assert token.status is not None
    return str(token.status.token)


async def rollout(url: str, ca_pem: bytes, token: str, fetches: int) -> tuple[float, int, str]:
    """All fetches at once, each on its own TLS connection like separate pods."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    body = {"vault_id": VAULT, "secrets": [{"name": n, "version": None} for n in SECRETS]}
    limits = httpx.Limits(max_connections=fetches, max_keepalive_connections=0)
    first_error = ""
    async with httpx.AsyncClient(verify=context, timeout=120, limits=limits) as http:

        async def one() -> bool:
            nonlocal first_error
            try:
                r = await http.post(
                    f"{url}/v1/secrets", json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                return False
            if r.status_code != 200 or len(r.json()["secrets"]) != len(SECRETS):
                first_error = first_error or f"HTTP {r.status_code}: {r.text[:200]}"
                return False
            return True

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(fetches)))
        elapsed = time.monotonic() - started
    return elapsed, results.count(False), first_error


def quota_emulator() -> Emulator:
    """Sakura at its real quota (100 calls a minute), holding `SECRETS` in `VAULT`."""
    return Emulator(
        EmulatorConfig(
            access_token="bench",
            access_token_secret="bench-secret",
            rate_limit=100,
            rate_limit_window=60,
            seed={"vaults": [{"id": VAULT, "secrets": {n: f"{n}-value" for n in SECRETS}}]},
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=1000)
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh up)")', file=sys.stderr)
        return 2
    admin = kube_api_client(kubeconfig)
    namespace = f"broker-load-{uuid.uuid4().hex[:6]}"
    emulator = quota_emulator()
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    try:
        token = prepare_cluster(admin, namespace)
        with tempfile.TemporaryDirectory() as tmp, run_in_thread(emulator) as emulator_url:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(leaf.cert_pem)
            key.write_bytes(leaf.key_pem)
            parts = build_broker(
                SakuraConfig("bench", "bench-secret", base_url=emulator_url),
                kube_api_client=kube_api_client(kubeconfig),
                registry=CollectorRegistry(),
            )

            @contextlib.asynccontextmanager
            async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
                yield
                await parts.aclose()

            app = Starlette(routes=parts.routes, lifespan=lifespan)
            with run_in_thread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
                elapsed, failed, first_error = asyncio.run(
                    rollout(url, ca.cert_pem, token, args.fetches)
                )
            sakura_calls = emulator.knobs.calls["total"]
    finally:
        with contextlib.suppress(k8s.ApiException):
            k8s.CoreV1Api(admin).delete_namespace(namespace)
    print(f"fetches:       {args.fetches} concurrent x {len(SECRETS)} secrets (one token)")
    print(f"sakura calls:  {sakura_calls} (goal <= 10; quota 100 per 60 s)")
    print(f"all finished:  {elapsed:.2f} s")
    print(f"failed:        {failed} (goal 0)" + (f"; first: {first_error}" if failed else ""))
    return 0 if failed == 0 and sakura_calls <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
