"""What doctor knows about a cluster, gathered once by `gather` and read by every check.

Objects are the API server's JSON (None when absent); nothing here is a Secret's data but the
TLS Secret's certificates (`tls.crt`, `ca.crt`), which are public.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

NAMESPACE = "sakura-secrets"
NAME = "sakura-secrets-injector"
"""The Deployment, Service, webhook configuration, PDB and NetworkPolicy (manifests/base)."""
CERTS = "sakura-secrets-certs"
TLS_SECRET = "sakura-secrets-injector-tls"  # noqa: S105 (a Secret's name)
INJECTION_LABEL = "sakura-secrets-injection"
INJECTOR_SELECTOR = (
    "app.kubernetes.io/name=sakura-secrets-injector,app.kubernetes.io/component=injector"
)
PLACEHOLDER_CIDR = "192.0.2.0/24"
"""The ipBlock manifests/base/networkpolicy.yaml ships for the API servers: matches no one."""


def container_port(deployment: Json | None, name: str, default: int) -> int:
    """The injector container's port called `name` in the Deployment, else `default`."""
    spec = (deployment or {}).get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    return default


@dataclass(frozen=True)
class Presented:
    """The certificate a replica presented on its webhook port (`where`: address:port), or
    why it could not be read (`error`)."""

    where: str
    der: bytes = b""
    error: str = ""


@dataclass(frozen=True)
class Readiness:
    """A replica's answer to GET /readyz on its probe port (through the API server's proxy):
    HTTP status and body, or why it could not be asked."""

    pod: str
    status: int = 0
    body: Json = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Install:
    """Where the injector is installed (the manifests' names; its namespace may differ)."""

    namespace: str = NAMESPACE
    name: str = NAME

    @property
    def host(self) -> str:
        """The name the API server checks the webhook's certificate against."""
        return f"{self.name}.{self.namespace}.svc"


@dataclass(frozen=True)
class Facts:
    install: Install
    now: float
    """POSIX seconds, for certificate expiry."""
    server_version: tuple[str, str] = ("", "")
    webhook: Json | None = None
    deployment: Json | None = None
    certs_deployment: Json | None = None
    pdb: Json | None = None
    service: Json | None = None
    endpoints: Json | None = None
    network_policy: Json | None = None
    tls_certificate: str = ""
    """PEM of the TLS Secret's tls.crt ("" when the Secret or the key is missing)."""
    tls_ca: str = ""
    presented: tuple[Presented, ...] = ()
    readiness: tuple[Readiness, ...] = ()
    api_server_addresses: tuple[str, ...] = ()
    """Addresses of the default/kubernetes Endpoints: where the API servers run."""
    injector_namespace_labels: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    """The namespace given with --namespace ("" when none)."""
    namespace_object: Json | None = None
    namespace_policies: tuple[Json, ...] = ()
    """NetworkPolicies in that namespace (their egress rules may block the broker)."""

    def container_env(self) -> dict[str, str]:
        """The injector container's literal env values (valueFrom entries are left out)."""
        if self.deployment is None:
            return {}
        containers = self.deployment.get("spec", {}).get("template", {}).get("spec", {})
        for container in containers.get("containers") or []:
            if container.get("name") == "injector" or len(containers["containers"]) == 1:
                return {
                    e["name"]: e["value"]
                    for e in container.get("env") or []
                    if isinstance(e.get("value"), str)
                }
        return {}
