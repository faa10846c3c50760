"""One way to reach the Kubernetes API, for every part of the injector that needs it."""

from __future__ import annotations

import os

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException


class KubeConfigError(RuntimeError):
    """No usable Kubernetes credentials; the message says where it looked."""


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
