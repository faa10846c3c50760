"""The broker's audit line (logger `injector.audit`): one per answer, served or refused, and
the Event of a refusal of a running pod.

Sakura's own logs see only the injector's one key, so this line is the only record of which
workload read what: the pod's namespace, ServiceAccount, name and uid (from the API server's
TokenReview, never from the request), the vault, the secrets asked for and the versions
served (and which were unchanged), the decision and the client's address. Never a value: the
fields are names, versions and the refusal's one-line message, which never carries one.
docs/operations.md ("Logs") lists the fields.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from contract.broker import Answer, FetchedSecret, SecretRequest, Unchanged
from injector.broker.errors import BrokerError
from injector.broker.tokens import Identity
from injector.events import Occurrence, Regarding

log = logging.getLogger("injector.audit")

REFUSED_REASON = "SecretsRefused"
"""The Event reason of a broker refusal; the note starts with the refusal's kind."""
FETCH_ACTION = "Fetch"


def refusal_kind(refusal: BaseException) -> str:
    """`AccessDenied` -> `access-denied`: the refusal's kind as the line and Events name it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", type(refusal).__name__).lower()


def audit_served(identity: Identity, request: SecretRequest, answer: Answer, client: str) -> None:
    fields = _fields(identity, request, client)
    fields["decision"] = "served"
    fields["served"] = [_item(item) for item in answer.items]
    fields["unchanged"] = [i.name for i in answer.items if isinstance(i, Unchanged)]
    log.info("served %s", _about(identity, request), extra=fields)


def audit_refused(
    identity: Identity | None, request: SecretRequest | None, client: str, refusal: Exception
) -> None:
    """A refusal, with what is known: no identity when the token was not accepted, no request
    when the body could not be read. Its message is the one the caller gets (value-free)."""
    fields = _fields(identity, request, client)
    fields["decision"] = "refused"
    fields["refusal"] = refusal_kind(refusal)
    fields["detail"] = getattr(refusal, "message", None) or str(refusal)
    about = _about(identity, request)
    log.warning("refused %s: %s", about, fields["detail"], extra=fields)


def audit_failed(identity: Identity | None, request: SecretRequest | None, client: str) -> None:
    """An unexpected failure (the caller gets a 500): the traceback goes with the line."""
    fields = _fields(identity, request, client)
    fields["decision"] = "error"
    log.exception("failed %s", _about(identity, request), extra=fields)


def refusal_event(identity: Identity, refusal: BrokerError) -> Occurrence:
    """The Event of a refusal, on the running pod the token is bound to (by name and uid)."""
    pod = Regarding("Pod", identity.namespace, identity.pod_name, uid=identity.pod_uid)
    note = f"{refusal_kind(refusal)}: {refusal.message}"
    return Occurrence(pod, REFUSED_REASON, note, FETCH_ACTION)


def _fields(
    identity: Identity | None, request: SecretRequest | None, client: str
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if identity is not None:
        fields.update(
            namespace=identity.namespace,
            service_account=identity.service_account,
            pod=identity.pod_name,
            pod_uid=identity.pod_uid,
        )
    if request is not None:
        fields["vault_id"] = request.vault_id
        fields["requested"] = [str(wanted) for wanted in request.secrets]
    fields["client"] = client
    return fields


def _item(item: FetchedSecret | Unchanged) -> dict[str, Any]:
    return {"name": item.name, "version": item.version}


def _about(identity: Identity | None, request: SecretRequest | None) -> str:
    who = str(identity) if identity is not None else "an unverified caller"
    return f"{who} vault {request.vault_id}" if request is not None else who
