"""May this ServiceAccount read this vault's secret? SubjectAccessReviews, remembered briefly.

Access is plain Kubernetes RBAC on two virtual resources of API group `sakura-secrets.io`,
verb `get`, in the pod's namespace: `vaults` named by the vault ID, and `secrets` named by the
pair `VAULT_ID/NAME`. A secret is authorized as that pair, so grants never combine across
vaults (a grant of `111111111111/db` and `222222222222/stripe` opens no `db` in vault
`222222222222`). The vault is asked first and a denial stops there: a namespace without the
vault grant costs one review, however many secrets it names. The same reviewer answers the
broker, the admission check and `can-i`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.broker.memo import ExpiringMemo
from injector.broker.tokens import service_account_groups, service_account_username
from injector.fair_queue import FairQueue
from injector.kube import KUBE_TIMEOUT, KubernetesUnavailable, call_kubernetes, kubernetes_calls

API_GROUP = "sakura-secrets.io"
VAULTS = "vaults"
SECRETS = "secrets"
VERB = "get"


@dataclass(frozen=True)
class Subject:
    """A ServiceAccount as RBAC sees it: its namespace, name and groups."""

    namespace: str
    service_account: str
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, namespace: str, service_account: str) -> Subject:
        """The subject with the groups Kubernetes gives every ServiceAccount."""
        return cls(namespace, service_account, service_account_groups(namespace))

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.service_account)


def secret_pair(vault_id: str, name: str) -> str:
    """The resource name RBAC grants a secret by: `VAULT_ID/NAME` (vault IDs have no '/')."""
    return f"{vault_id}/{name}"


def missing_grant(subject: Subject, resource: str, name: str) -> str:
    """The one-line refusal that says exactly which grant to add, with the Role rule."""
    return (
        f"serviceaccount {subject.namespace}/{subject.service_account} may not get "
        f'{API_GROUP} {resource} "{name}"; grant it with a Role/RoleBinding (verb {VERB}, '
        f"apiGroup {API_GROUP}, resource {resource}, resourceName {name}), e.g. the rule "
        f"{{apiGroups: [{API_GROUP}], resources: [{resource}], resourceNames: "
        f"[{json.dumps(name, ensure_ascii=False)}], verbs: [{VERB}]}}"
    )


@dataclass(frozen=True)
class Missing:
    """The grants a subject lacks to read some secrets of one vault; empty when it may.

    When the vault is not granted its secrets are not reviewed at all, so `secrets` is empty.
    """

    subject: Subject
    vault_id: str
    vault: bool = False
    """True when the vault itself is not granted."""
    secrets: tuple[str, ...] = ()
    """The secret names whose pair `VAULT_ID/NAME` is not granted, in request order."""

    def __bool__(self) -> bool:
        return self.vault or bool(self.secrets)

    def message(self) -> str:
        """The refusal for the first missing grant, naming any others on the same line."""
        if self.vault:
            return missing_grant(self.subject, VAULTS, self.vault_id) + (
                f"; each secret also needs the grant of its pair ({SECRETS} "
                f'"{secret_pair(self.vault_id, "NAME")}"), checked once the vault is granted'
            )
        pairs = [secret_pair(self.vault_id, n) for n in self.secrets]
        text = missing_grant(self.subject, SECRETS, pairs[0])
        if len(pairs) > 1:
            others = ", ".join(json.dumps(p, ensure_ascii=False) for p in pairs[1:])
            text += f"; the same grant is also missing for {others}"
        return text


class SubjectAccessReviews(Protocol):
    """The one call of the Kubernetes API the reviewer makes (k8s.AuthorizationV1Api has it)."""

    def create_subject_access_review(
        self, body: k8s.V1SubjectAccessReview, **kwargs: Any
    ) -> k8s.V1SubjectAccessReview: ...


class AccessReviewer:
    """Asks the API server with SubjectAccessReviews; remembers allows and denies briefly.

    A denial is remembered for a shorter time than an allow, so a freshly added RoleBinding
    takes effect within `deny_ttl` seconds; a revoked one within `allow_ttl` seconds.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        allow_ttl: float = 30.0,
        deny_ttl: float = 5.0,
        request_timeout: float = KUBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        calls: FairQueue | None = None,
        reviews: SubjectAccessReviews | None = None,
    ) -> None:
        """`calls` is the pool of Kubernetes calls, where each review waits in the lane of
        the subject's namespace (a private pool when None); `reviews` replaces the API
        client's AuthorizationV1Api (a test's recording fake)."""
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.request_timeout = request_timeout
        self._calls = calls if calls is not None else kubernetes_calls()
        self._authz = reviews if reviews is not None else k8s.AuthorizationV1Api(api_client)
        self._answers: ExpiringMemo[tuple[Subject, str, str], bool] = ExpiringMemo(clock=clock)

    async def allowed(self, subject: Subject, resource: str, name: str) -> bool:
        """May `subject` get `resource` (VAULTS, or SECRETS by pair) `name`? Remembered briefly."""
        return await self._answers.get(
            (subject, resource, name),
            lambda: self._review(subject, resource, name),
            lambda ok: self.allow_ttl if ok else self.deny_ttl,
        )

    async def missing(self, subject: Subject, vault_id: str, secrets: Iterable[str]) -> Missing:
        """The grants `subject` lacks to get `secrets` (without repeats) of vault `vault_id`.

        The vault first: without it no secret is reviewed (one review, not one per name).
        """
        if not await self.allowed(subject, VAULTS, vault_id):
            return Missing(subject, vault_id, vault=True)
        names = list(dict.fromkeys(secrets))
        answers = await asyncio.gather(
            *(self.allowed(subject, SECRETS, secret_pair(vault_id, n)) for n in names)
        )
        denied = tuple(n for n, ok in zip(names, answers, strict=True) if not ok)
        return Missing(subject, vault_id, secrets=denied)

    async def _review(self, subject: Subject, resource: str, name: str) -> bool:
        body = k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user=subject.username,
                groups=list(subject.groups),
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=subject.namespace,
                    verb=VERB,
                    group=API_GROUP,
                    resource=resource,
                    name=name,
                ),
            )
        )
        try:
            answer = await call_kubernetes(
                self._calls,
                ("namespace", subject.namespace),
                lambda: self._authz.create_subject_access_review(
                    body, _request_timeout=self.request_timeout
                ),
            )
        except KubernetesUnavailable:
            raise
        except ApiException as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not review access to {resource} {name!r} "
                f"(HTTP {exc.status} {exc.reason}); the injector needs create on "
                "subjectaccessreviews"
            ) from None
        except Exception as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not be reached to review access to {resource} "
                f"{name!r} ({type(exc).__name__})"
            ) from None
        status = answer.status
        return bool(status is not None and status.allowed and not status.denied)
