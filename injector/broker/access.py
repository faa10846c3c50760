"""May this ServiceAccount read this secret? A SubjectAccessReview per secret, remembered briefly.

Access is plain Kubernetes RBAC on a virtual resource: verb `get`, API group
`sakura-secrets.io`, resource `secrets`, resource name = the Sakura secret's name, in the
pod's namespace. The same reviewer answers the broker, the admission check and `can-i`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.broker.memo import ExpiringMemo
from injector.broker.tokens import (
    KUBE_TIMEOUT,
    KubernetesUnavailable,
    service_account_groups,
    service_account_username,
)

API_GROUP = "sakura-secrets.io"
RESOURCE = "secrets"
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


def missing_grant(subject: Subject, secret: str) -> str:
    """The one-line refusal that says exactly which grant to add."""
    return (
        f"serviceaccount {subject.namespace}/{subject.service_account} may not get "
        f'{API_GROUP} secrets "{secret}"; grant it with a Role/RoleBinding (verb {VERB}, '
        f"apiGroup {API_GROUP}, resource {RESOURCE}, resourceName {secret})"
    )


def denial_message(subject: Subject, denied: Iterable[str]) -> str:
    """The refusal for the first denied secret, naming any others on the same line."""
    names = list(denied)
    message = missing_grant(subject, names[0])
    if len(names) > 1:
        others = ", ".join(f'"{n}"' for n in names[1:])
        message += f"; the same grant is also missing for {others}"
    return message


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
    ) -> None:
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.request_timeout = request_timeout
        self._authz = k8s.AuthorizationV1Api(api_client)
        self._answers: ExpiringMemo[tuple[Subject, str], bool] = ExpiringMemo(clock=clock)

    async def allowed(self, subject: Subject, secret: str) -> bool:
        return await self._answers.get(
            (subject, secret),
            lambda: self._review(subject, secret),
            lambda ok: self.allow_ttl if ok else self.deny_ttl,
        )

    async def denied(self, subject: Subject, secrets: Iterable[str]) -> list[str]:
        """The secrets (in the given order, without repeats) `subject` may not get."""
        names = list(dict.fromkeys(secrets))
        answers = await asyncio.gather(*(self.allowed(subject, n) for n in names))
        return [n for n, ok in zip(names, answers, strict=True) if not ok]

    async def _review(self, subject: Subject, secret: str) -> bool:
        body = k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user=subject.username,
                groups=list(subject.groups),
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=subject.namespace,
                    verb=VERB,
                    group=API_GROUP,
                    resource=RESOURCE,
                    name=secret,
                ),
            )
        )
        try:
            answer = await asyncio.to_thread(
                self._authz.create_subject_access_review,
                body,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not review access to secret {secret!r} "
                f"(HTTP {exc.status} {exc.reason}); the injector needs create on "
                "subjectaccessreviews"
            ) from None
        except Exception as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not be reached to review access to secret "
                f"{secret!r} ({type(exc).__name__})"
            ) from None
        status = answer.status
        return bool(status is not None and status.allowed and not status.denied)
