"""TLS bootstrap in a cluster: a CA and serving certificate in a Secret, trusted by the webhook.

The I/O shell around `injector.certs` (the `certs` subcommand). It is idempotent and safe to
run from several replicas at once: stored material that is still good is reused, writes use
optimistic concurrency (create, or replace at the read resourceVersion, and re-read on a
conflict), and the webhook's caBundle is patched with JSON-patch `test` guards.

On rotation the new CA is put in front of the previous one in `ca.crt` and in every caBundle,
so injector pods still serving the old certificate stay trusted until they reload the new one.
The CA private key is never stored: the next rotation simply makes a new CA.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from injector.certs import (
    KeyPair,
    generate_ca,
    issue_serving_cert,
    reissue_reason,
    service_dns_names,
    unexpired_certs,
)
from injector.kube import KubeConfigError, api_client

log = logging.getLogger(__name__)

CA_KEY = "ca.crt"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
_ATTEMPTS = 5
_LABELS = {"app.kubernetes.io/name": "sakura-secrets-injector"}


class BootstrapError(RuntimeError):
    """The bootstrap could not finish; the message names the object and the likely fix."""


@dataclass(frozen=True)
class BootstrapTarget:
    """Which objects the bootstrap owns: all names come from flags, none are guessed."""

    namespace: str
    service: str
    secret: str
    webhook_configuration: str


@dataclass(frozen=True)
class BootstrapResult:
    """What the bootstrap did, for the log line of the `certs` subcommand."""

    issued: bool
    reason: str
    ca_bundle_pem: bytes
    patched_webhooks: tuple[str, ...]


def kube_api_client() -> Any:
    """An API client from the in-cluster ServiceAccount, else from KUBECONFIG."""
    try:
        return api_client()
    except KubeConfigError as error:
        raise BootstrapError(str(error)) from None


def bootstrap(
    api_client: Any,
    target: BootstrapTarget,
    *,
    webhook_wait_seconds: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> BootstrapResult:
    """Ensure the TLS Secret holds usable material, then trust its CA in every webhook."""
    core = client.CoreV1Api(api_client)
    issued, reason, bundle = _ensure_secret(core, target)
    admission = client.AdmissionregistrationV1Api(api_client)
    patched = _patch_ca_bundle(admission, target, bundle, webhook_wait_seconds, sleep)
    return BootstrapResult(issued, reason, bundle, patched)


def _ensure_secret(core: Any, target: BootstrapTarget) -> tuple[bool, str, bytes]:
    names = service_dns_names(target.service, target.namespace)
    where = f"Secret {target.namespace}/{target.secret}"
    for _ in range(_ATTEMPTS):
        current = _read_secret(core, target)
        old_bundle = b""
        if current is None:
            reason = f"{where} does not exist"
        else:
            data = _decoded(current.data or {})
            old_bundle = data.get(CA_KEY, b"")
            stored = KeyPair(data.get(CERT_KEY, b""), data.get(KEY_KEY, b""))
            why = reissue_reason(old_bundle, stored, names)
            if why is None:
                return False, f"reusing {where}", old_bundle
            reason = f"{where}: {why}"
        ca = generate_ca()
        serving = issue_serving_cert(ca, names)
        bundle = ca.cert_pem + _previous_ca(old_bundle)
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=target.secret,
                namespace=target.namespace,
                labels=_LABELS,
                resource_version=None if current is None else current.metadata.resource_version,
            ),
            type="kubernetes.io/tls",
            data=_encoded({CERT_KEY: serving.cert_pem, KEY_KEY: serving.key_pem, CA_KEY: bundle}),
        )
        try:
            if current is None:
                core.create_namespaced_secret(target.namespace, body)
            else:
                core.replace_namespaced_secret(target.secret, target.namespace, body)
        except ApiException as error:
            if error.status in (409, 422) and _is_conflict(error):
                log.info("%s changed while writing it; reading it again", where)
                continue
            raise _api_error(error, f"write {where}") from None
        return True, f"issued a new CA and serving certificate ({reason})", bundle
    raise BootstrapError(f"{where} kept changing under us after {_ATTEMPTS} attempts; run again")


def _read_secret(core: Any, target: BootstrapTarget) -> Any:
    try:
        return core.read_namespaced_secret(target.secret, target.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _api_error(error, f"read Secret {target.namespace}/{target.secret}") from None


def _patch_ca_bundle(
    admission: Any,
    target: BootstrapTarget,
    bundle: bytes,
    wait_seconds: float,
    sleep: Callable[[float], None],
) -> tuple[str, ...]:
    name = target.webhook_configuration
    encoded = base64.b64encode(bundle).decode("ascii")
    waited = 0.0
    attempts = 0
    while True:
        try:
            current = admission.read_mutating_webhook_configuration(name)
        except ApiException as error:
            if error.status == 404 and waited < wait_seconds:
                # kubectl apply -k may create the webhook configuration after our pod started
                sleep(2.0)
                waited += 2.0
                continue
            raise _api_error(error, f"read MutatingWebhookConfiguration {name}") from None
        webhooks = current.webhooks or []
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": current.metadata.resource_version,
            }
        ]
        changed: list[str] = []
        for index, webhook in enumerate(webhooks):
            if _text(webhook.client_config.ca_bundle) == encoded:
                continue
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
            )
            changed.append(webhook.name)
        if not changed:
            return ()
        try:
            admission.patch_mutating_webhook_configuration(
                name, ops, _content_type="application/json-patch+json"
            )
        except ApiException as error:
            attempts += 1
            if error.status in (409, 422) and attempts < _ATTEMPTS:
                log.info("MutatingWebhookConfiguration %s changed while patching; again", name)
                continue
            raise _api_error(
                error, f"patch caBundle of MutatingWebhookConfiguration {name}"
            ) from None
        return tuple(changed)


def _previous_ca(old_bundle: bytes) -> bytes:
    """The CA that signed the certificate still being served, kept trusted during rotation."""
    alive = unexpired_certs(old_bundle)
    end = alive.find(b"-----END CERTIFICATE-----")
    return b"" if end < 0 else alive[: end + len(b"-----END CERTIFICATE-----")] + b"\n"


def _decoded(data: dict[str, str | bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in data.items():
        try:
            out[key] = base64.b64decode(_text(value), validate=True)
        except ValueError:
            out[key] = b""
    return out


def _text(value: str | bytes | None) -> str:
    """The client hands base64 fields back as str or bytes depending on its version."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value or ""


def _encoded(data: dict[str, bytes]) -> dict[str, bytes | str]:
    return {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}


def _is_conflict(error: ApiException) -> bool:
    text = str(error.body or "")
    return error.status == 409 or "resourceVersion" in text or "test operation" in text


def _api_error(error: ApiException, doing: str) -> BootstrapError:
    if error.status == 403:
        return BootstrapError(
            f"could not {doing}: forbidden; the injector's ServiceAccount needs the RBAC in "
            "manifests/rbac.yaml (was the Role/ClusterRole renamed?)"
        )
    if error.status == 404:
        return BootstrapError(f"could not {doing}: not found; apply manifests/ first")
    return BootstrapError(f"could not {doing}: HTTP {error.status} {error.reason}")
