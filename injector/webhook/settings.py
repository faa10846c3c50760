"""What the webhook needs to know about its own deployment to build an injected pod."""

from __future__ import annotations

import re
from dataclasses import dataclass

from contract.plan import VAULT_ID
from injector.webhook.errors import SettingsError
from injector.webhook.quantity import parse_quantity

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MESH_PROXIES = ("istio-proxy", "linkerd-proxy")
"""Containers a service mesh's webhook adds to the pod (Istio, Linkerd): not targets unless
the `containers` annotation names them."""
_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")

__all__ = ["MESH_PROXIES", "PULL_POLICIES", "SettingsError", "WebhookSettings"]


@dataclass(frozen=True)
class WebhookSettings:
    """The injector's own configuration, read once at start-up and passed explicitly.

    `broker_url` and `broker_ca_pem` go into every broker-mode init container so it can
    reach the injector over TLS; `sakura_endpoint` / `sakura_zone` are copied into
    direct-mode init containers only (they talk to Sakura themselves).
    """

    image: str
    broker_url: str
    broker_ca_pem: str = ""
    injector_namespace: str = "sakura-secrets"
    default_vault_id: str | None = None
    sakura_endpoint: str | None = None
    sakura_zone: str | None = None
    image_pull_policy: str = "IfNotPresent"
    volume_size_limit: str = "8Mi"
    """tmpfs size limit of the secrets volume; counted against the pod's memory."""
    fallback_uid: int = 65532
    """Owner of the files when no annotation or securityContext names one (distroless nonroot)."""
    mesh_proxy_containers: tuple[str, ...] = MESH_PROXIES
    """Container names of mesh proxies, never targets by default (`MESH_PROXIES` and more)."""
    review_timeout: float = 10.0
    """The webhook configuration's timeoutSeconds: a review that cannot be answered within it
    is shed with a fast 429 denial instead of queued (docs/webhook.md, "Admission queue")."""
    native_sidecars: bool = False
    """The refresh container's shape: True, a native sidecar (an init container with
    `restartPolicy: Always`, Kubernetes 1.29+); False, a plain container, and pods that must
    terminate cannot refresh. Decided outside the core (`--native-sidecars`, docs/webhook.md)."""
    env_files: bool = False
    """Whether the API server and kubelets take `fileKeyRef` variables (Kubernetes 1.35+): False
    refuses pods with `env-VAR` annotations. Decided outside the core (`--env-files`)."""

    def __post_init__(self) -> None:
        if not self.image.strip():
            raise SettingsError(
                "image is empty; set the init container image (same as the injector)"
            )
        if not self.broker_url.startswith("https://"):
            raise SettingsError(
                f"broker_url {self.broker_url!r} must be an https:// URL of the injector's Service"
            )
        if self.default_vault_id is not None and not VAULT_ID.match(self.default_vault_id):
            raise SettingsError(
                f"default_vault_id {self.default_vault_id!r} is not a 12-digit Sakura vault ID"
            )
        if self.image_pull_policy not in PULL_POLICIES:
            raise SettingsError(
                f"image_pull_policy {self.image_pull_policy!r} is not one of "
                f"{', '.join(PULL_POLICIES)}"
            )
        if not self.injector_namespace:
            raise SettingsError(
                "injector_namespace is empty; set the namespace the injector runs in"
            )
        for name in self.mesh_proxy_containers:
            if not _CONTAINER_NAME.match(name):
                raise SettingsError(
                    f"mesh_proxy_containers: {name!r} is not a container name (a DNS-1123 "
                    "label: lowercase letters, digits and '-', at most 63 characters)"
                )
        try:
            parse_quantity(self.volume_size_limit)
        except ValueError as exc:
            raise SettingsError(f"volume_size_limit: {exc}") from None
        if not 1 <= self.review_timeout <= 30:
            raise SettingsError(
                f"review_timeout {self.review_timeout!r} must be the webhook's timeoutSeconds "
                "(1-30 seconds, as Kubernetes allows)"
            )
        if isinstance(self.fallback_uid, bool) or not 0 < self.fallback_uid < 2**31:
            raise SettingsError(
                f"fallback_uid {self.fallback_uid!r} must be a non-root uid (1..2^31-1)"
            )
