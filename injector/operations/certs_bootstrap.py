"""TLS bootstrap and renewal in a cluster: a kept CA, a serving certificate, a trusted caBundle.

The I/O shell around `injector.operations.authority` (the `certs` subcommand, run by the
sakura-secrets-certs Deployment, never by the serving process). Two Secrets:

- the CA Secret (`ca.crt`, `ca.key`, `retired.crt`): the CA key, which only the certs
  ServiceAccount may read; the serving pods never mount it;
- the TLS Secret (`tls.crt`, `tls.key`, `ca.crt`): what the serving pods mount read-only;
  `ca.crt` is the bundle of trusted CAs handed to the API server and to injected pods.

It is idempotent and safe to run from several processes at once: stored material that is
still good is reused, writes use optimistic concurrency (create, or replace at the read
resourceVersion, and read again on a conflict), the CA Secret is written before the TLS Secret
it signs, and the webhook's caBundle is patched with JSON-patch `test` guards.
"""

from __future__ import annotations

import base64
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from injector.kube import KubeConfigError, api_client
from injector.operations.authority import Authority, Decision, Policy, decide
from injector.operations.certs import KeyPair, not_after, service_dns_names
from injector.operations.errors import BootstrapError

log = logging.getLogger(__name__)

CA_KEY = "ca.crt"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_PRIVATE_KEY = "ca.key"
RETIRED_KEY = "retired.crt"
_ATTEMPTS = 5
_LABELS = {"app.kubernetes.io/name": "sakura-secrets-injector"}


@dataclass(frozen=True)
class BootstrapTarget:
    """Which objects the bootstrap owns: all names come from flags, none are guessed."""

    namespace: str
    service: str
    secret: str
    webhook_configuration: str
    ca_secret: str = "sakura-secrets-injector-ca"  # noqa: S105 (a Secret name)


@dataclass(frozen=True)
class BootstrapResult:
    """What the bootstrap did, for the log line of the `certs` subcommand."""

    issued: bool
    reason: str
    ca_bundle_pem: bytes
    patched_webhooks: tuple[str, ...]
    serving_not_after: datetime.datetime
    ca_rotated: bool = False


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
    policy: Policy | None = None,
    rotate_ca: bool = False,
    webhook_wait_seconds: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> BootstrapResult:
    """Ensure both Secrets hold usable material, then trust the bundle in every webhook."""
    core = client.CoreV1Api(api_client)
    decision = _ensure_secrets(core, target, policy or Policy(), rotate_ca)
    admission = client.AdmissionregistrationV1Api(api_client)
    patched = _patch_ca_bundle(admission, target, decision.bundle, webhook_wait_seconds, sleep)
    return BootstrapResult(
        issued=decision.serving_changed,
        reason=decision.reason,
        ca_bundle_pem=decision.bundle,
        patched_webhooks=patched,
        serving_not_after=not_after(decision.serving.cert_pem),
        ca_rotated=decision.authority_changed,
    )


def renew_forever(
    api_client: Any,
    target: BootstrapTarget,
    *,
    interval: float,
    policy: Policy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Bootstrap now, then check again every `interval` seconds, renewing ahead of expiry.

    A failed round is logged and retried sooner (30 s, doubling up to `interval`); a round
    that leaves a certificate expiring within the renewal window logs a warning, so a renewal
    that keeps failing is loud long before the certificate expires. `rounds` bounds the loop
    (tests); None runs until the process is stopped.
    """
    rules = policy or Policy()
    retry = min(30.0, interval)
    done = 0
    while rounds is None or done < rounds:
        done += 1
        try:
            result = bootstrap(api_client, target, policy=rules)
        except BootstrapError as error:
            log.error("certificate renewal failed, retrying in %.0fs: %s", retry, error)
            sleep(retry)
            retry = min(interval, retry * 2)
            continue
        retry = min(30.0, interval)
        log.info("%s", describe(result))
        left = result.serving_not_after - datetime.datetime.now(datetime.UTC)
        if left <= rules.renew_before:
            log.warning(
                "the serving certificate expires %s, inside the renewal window of %d days",
                f"{result.serving_not_after:%Y-%m-%d %H:%M}",
                rules.renew_before.days,
            )
        sleep(interval)


def describe(result: BootstrapResult) -> str:
    """One log line: what was done, and until when the served certificate is valid."""
    patched = ", ".join(result.patched_webhooks) or "none needed"
    until = f"{result.serving_not_after:%Y-%m-%d %H:%M} UTC"
    return (
        f"{result.reason}; caBundle patched for webhooks: {patched}; serving certificate "
        f"valid until {until}"
    )


def _ensure_secrets(
    core: Any, target: BootstrapTarget, policy: Policy, rotate_ca: bool
) -> Decision:
    names = service_dns_names(target.service, target.namespace)
    rotate = rotate_ca  # once per run: a retry after a conflict must not rotate again
    for _ in range(_ATTEMPTS):
        ca_secret = _read_secret(core, target.namespace, target.ca_secret)
        tls_secret = _read_secret(core, target.namespace, target.secret)
        ca_data = _decoded(ca_secret.data or {}) if ca_secret is not None else {}
        tls_data = _decoded(tls_secret.data or {}) if tls_secret is not None else {}
        stored = None
        if ca_data.get(CA_KEY) or ca_data.get(CA_PRIVATE_KEY):
            stored = Authority(
                KeyPair(ca_data.get(CA_KEY, b""), ca_data.get(CA_PRIVATE_KEY, b"")),
                ca_data.get(RETIRED_KEY, b""),
            )
        serving = None
        if tls_data.get(CERT_KEY) or tls_data.get(KEY_KEY):
            serving = KeyPair(tls_data.get(CERT_KEY, b""), tls_data.get(KEY_KEY, b""))
        decision = decide(
            stored,
            serving,
            tls_data.get(CA_KEY, b""),
            names,
            now=datetime.datetime.now(datetime.UTC),
            policy=policy,
            rotate_ca=rotate,
        )
        try:
            if decision.authority_changed:
                authority = decision.authority
                _write(
                    core,
                    target.namespace,
                    target.ca_secret,
                    ca_secret,
                    "Opaque",
                    {
                        CA_KEY: authority.issuer.cert_pem,
                        CA_PRIVATE_KEY: authority.issuer.key_pem,
                        RETIRED_KEY: authority.retired,
                    },
                )
                rotate = False
            wanted = {
                CERT_KEY: decision.serving.cert_pem,
                KEY_KEY: decision.serving.key_pem,
                CA_KEY: decision.bundle,
            }
            if tls_secret is None or {k: tls_data.get(k) for k in wanted} != wanted:
                _write(
                    core, target.namespace, target.secret, tls_secret, "kubernetes.io/tls", wanted
                )
        except _Conflict as conflict:
            log.info("%s changed while writing it; reading both Secrets again", conflict)
            continue
        return decision
    raise BootstrapError(
        f"Secrets {target.namespace}/{target.ca_secret} and {target.secret} kept changing "
        f"under us after {_ATTEMPTS} attempts; run again"
    )


class _Conflict(Exception):
    """Another writer got there first."""


def _write(
    core: Any,
    namespace: str,
    name: str,
    current: Any,
    kind: str,
    data: dict[str, bytes],
) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=_LABELS,
            resource_version=None if current is None else current.metadata.resource_version,
        ),
        type=kind if current is None else current.type,
        data=_encoded(data),
    )
    where = f"Secret {namespace}/{name}"
    try:
        if current is None:
            core.create_namespaced_secret(namespace, body)
        else:
            core.replace_namespaced_secret(name, namespace, body)
    except ApiException as error:
        if error.status in (409, 422) and _is_conflict(error):
            raise _Conflict(where) from None
        raise _api_error(error, f"write {where}") from None


def _read_secret(core: Any, namespace: str, name: str) -> Any:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _api_error(error, f"read Secret {namespace}/{name}") from None


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
            f"could not {doing}: forbidden; the certs ServiceAccount (sakura-secrets-certs) "
            "needs the RBAC in manifests/base/certs.yaml (was a Role or ClusterRole renamed?)"
        )
    if error.status == 404:
        return BootstrapError(f"could not {doing}: not found; apply manifests/ first")
    return BootstrapError(f"could not {doing}: HTTP {error.status} {error.reason}")
