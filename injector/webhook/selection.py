"""Should this pod be injected at all? Decided before any annotation is parsed.

The namespace label is the webhook's namespaceSelector's job; this is the second line: the
pod's own opt-in, a pod that was already injected (reinvocation), and namespaces that are
never mutated whatever their labels say.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.annotations import INJECT, STATUS, STATUS_INJECTED
from injector.webhook.decision import ReasonCode
from injector.webhook.errors import Denied
from injector.webhook.settings import WebhookSettings

PROTECTED_NAMESPACES = ("kube-system",)


def skip_reason(
    annotations: Mapping[str, str], namespace: str, settings: WebhookSettings
) -> tuple[ReasonCode, str] | None:
    """Why the pod is left alone (a code and a sentence), or None when it must be injected.

    Raises Denied for an `inject` value that is neither "true" nor "false": the user clearly
    meant something, and silently not injecting would surface much later as missing files.
    """
    if namespace == settings.injector_namespace or namespace in PROTECTED_NAMESPACES:
        return ReasonCode.EXCLUDED_NAMESPACE, f"namespace {namespace} is never injected"
    if annotations.get(STATUS) == STATUS_INJECTED:
        return ReasonCode.ALREADY_INJECTED, f"already injected ({STATUS}: {STATUS_INJECTED})"
    value = annotations.get(INJECT)
    if value is None:
        return ReasonCode.NOT_OPTED_IN, f"no {INJECT} annotation"
    text = value.strip().lower()
    if text == "true":
        return None
    if text == "false":
        return ReasonCode.OPTED_OUT, f'{INJECT} is "false"'
    raise Denied(f'annotation {INJECT}: {value!r} is not "true" or "false"; write "true" to inject')
