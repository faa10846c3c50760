"""One way to reach the Kubernetes API, for every part of the injector that needs it.

`api_client` finds the credentials; `kubernetes_calls` is the bounded pool the broker's
reviews and reads take turns in, each call bounded by `KUBE_TIMEOUT`; `server_version` is what
the API server says it is (`GET /version`). Errors:

    KubeConfigError          no usable credentials (a usage error: the message says where it looked)
    KubernetesUnavailable    the API server could not answer now: try again shortly
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from injector.fair_queue import FairQueue, Overloaded

KUBE_TIMEOUT = 5.0
"""Seconds one Kubernetes API call may take (connect, then read). The client is synchronous
and runs in worker threads: without a bound, a hung API server would hold a thread and the
init container's request forever."""
KUBE_WORKERS = 8
"""Threads of the pool every TokenReview, SubjectAccessReview and pod read runs in."""
KUBE_PER_KEY = 2
"""Of those, how many one namespace (or one client address) may hold at once: one flooding
source leaves six threads to everyone else."""
KUBE_WAITING_PER_KEY = 64
"""Calls of one namespace (or client address) that may wait for a thread; more get 503."""
KUBE_MAX_WAITING = 1024

R = TypeVar("R")


class KubeConfigError(RuntimeError):
    """No usable Kubernetes credentials; the message says where it looked."""


class KubernetesUnavailable(Exception):
    """The API server could not answer a review or a read now: try again shortly."""


def api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In-cluster credentials inside a pod, else the kubeconfig ($KUBECONFIG or ~/.kube).

    Each call builds its own Configuration, so no global client state is touched.
    """
    try:
        if (
            kubeconfig is None
            and os.environ.get("KUBERNETES_SERVICE_HOST")
            and not os.environ.get("KUBECONFIG")
        ):
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        client: k8s.ApiClient = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return client
    except (ConfigException, OSError) as error:
        raise KubeConfigError(
            f"no Kubernetes credentials: not in a pod and no usable kubeconfig ({error}); "
            "set KUBECONFIG or run inside the cluster"
        ) from None


def server_version(client: k8s.ApiClient, timeout: float = KUBE_TIMEOUT) -> tuple[str, str]:
    """The API server's (major, minor) as it reports them: ("1", "29"), or ("1", "29+") on
    some managed clusters. Blocks; raises whatever the client raises when it cannot tell."""
    info = k8s.VersionApi(client).get_code(_request_timeout=timeout)
    return str(info.major), str(info.minor)


def kubernetes_calls() -> FairQueue:
    """The bounded pool the Kubernetes API calls take turns in (docs/broker.md, "Kubernetes
    API calls"); one per process, shared by the broker, the admission check and `can-i`."""
    return FairQueue(
        "kubernetes",
        workers=KUBE_WORKERS,
        per_key=KUBE_PER_KEY,
        waiting_per_key=KUBE_WAITING_PER_KEY,
        max_waiting=KUBE_MAX_WAITING,
    )


async def call_kubernetes(calls: FairQueue, key: Hashable, call: Callable[[], R]) -> R:
    """`call()` in `calls`' lane `key`; a full lane is KubernetesUnavailable (retry)."""
    try:
        return await calls.run(key, call)
    except Overloaded:
        raise KubernetesUnavailable(
            "too many Kubernetes API calls of the same namespace or client are waiting; "
            "try again shortly"
        ) from None
