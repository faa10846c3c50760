"""Who is calling: a projected ServiceAccount token verified with a TokenReview.

The identity (namespace, ServiceAccount, pod) comes only from the API server's answer, never
from the request body. Only bound tokens (projected into a pod, with the pod's name and uid
in the review's extras) for our audience are accepted, and the pod must still exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.broker.memo import ExpiringMemo

AUDIENCE = "sakura-secrets-injector"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MAX_TOKEN_LENGTH = 16 * 1024
KUBE_TIMEOUT = 5.0
"""Seconds one Kubernetes API call may take (connect, then read). The client is synchronous
and runs in worker threads: without a bound, a hung API server would hold a thread and the
init container's request forever."""

log = logging.getLogger(__name__)


class TokenRejected(Exception):
    """The token does not prove a pod's identity (HTTP 401); the message says why."""


class KubernetesUnavailable(Exception):
    """The API server could not answer a review (HTTP 503): try again shortly."""


@dataclass(frozen=True)
class Identity:
    """A pod proven by its bound token: its namespace, ServiceAccount, name and uid."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    groups: tuple[str, ...]

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.service_account)

    def __str__(self) -> str:
        return f"serviceaccount {self.namespace}/{self.service_account} (pod {self.pod_name})"


def service_account_username(namespace: str, service_account: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{service_account}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    """The groups Kubernetes gives every ServiceAccount of `namespace`."""
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")


def parse_service_account(username: str) -> tuple[str, str]:
    """`system:serviceaccount:NS:SA` -> (NS, SA); anything else is rejected."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        raise TokenRejected(
            "the token does not belong to a ServiceAccount; present the projected token "
            "of the pod's ServiceAccount"
        )
    parts = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        raise TokenRejected(f"the token's user {username!r} is not a ServiceAccount name")
    return parts[0], parts[1]


def identity_from_review(status: Mapping[str, Any], audience: str) -> Identity:
    """Turn a TokenReview status (as a plain mapping) into an Identity, or reject it."""
    if not status.get("authenticated"):
        reason = str(status.get("error") or "no reason given")
        raise TokenRejected(
            f"the Kubernetes API did not accept the token ({_one_line(reason)}); it may be "
            f"expired, for another audience than {audience!r}, or its pod or ServiceAccount "
            "may be gone"
        )
    audiences = status.get("audiences") or []
    if audience not in audiences:
        raise TokenRejected(
            f"the token is not for audience {audience!r}; project it with "
            f"serviceAccountToken.audience: {audience}"
        )
    user = status.get("user") or {}
    namespace, service_account = parse_service_account(str(user.get("username") or ""))
    extra = user.get("extra") or {}
    pod_name = _single(extra.get(POD_NAME_EXTRA))
    pod_uid = _single(extra.get(POD_UID_EXTRA))
    if not pod_name or not pod_uid:
        raise TokenRejected(
            "the token is not bound to a pod; use the projected token the injector mounts "
            "(serviceAccountToken volume), not a long-lived ServiceAccount Secret token"
        )
    groups = tuple(str(g) for g in user.get("groups") or ())
    return Identity(namespace, service_account, pod_name, pod_uid, groups)


class TokenReviews(Protocol):
    """The TokenReview call the reviewer makes (k8s.AuthenticationV1Api has it)."""

    def create_token_review(self, body: k8s.V1TokenReview, **kwargs: Any) -> k8s.V1TokenReview: ...


class PodReader(Protocol):
    """The pod read the reviewer makes (k8s.CoreV1Api has it)."""

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> k8s.V1Pod: ...


class TokenReviewer:
    """Verifies tokens against the API server; answers are remembered for `review_ttl`.

    Reviews are keyed by the token's SHA-256, never by the token itself, and only accepted
    tokens are remembered, so a flood of garbage cannot fill the memory.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        audience: str = AUDIENCE,
        review_ttl: float = 10.0,
        pod_ttl: float = 5.0,
        request_timeout: float = KUBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        reviews: TokenReviews | None = None,
        pods: PodReader | None = None,
    ) -> None:
        """`reviews` and `pods` replace the API client's calls (a test's fakes of the API)."""
        self.audience = audience
        self.review_ttl = review_ttl
        self.pod_ttl = pod_ttl
        self.request_timeout = request_timeout
        self._authn = reviews if reviews is not None else k8s.AuthenticationV1Api(api_client)
        self._core = pods if pods is not None else k8s.CoreV1Api(api_client)
        self._reviews: ExpiringMemo[str, Identity] = ExpiringMemo(clock=clock)
        self._pods: ExpiringMemo[tuple[str, str], _PodFacts] = ExpiringMemo(clock=clock)

    async def verify(self, token: str) -> Identity:
        """The identity of a pod's bound token for our audience; TokenRejected otherwise."""
        token = token.strip()
        if not token:
            raise TokenRejected(
                "no token; send 'Authorization: Bearer <projected ServiceAccount token>'"
            )
        if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise TokenRejected("the bearer token is malformed")
        digest = hashlib.sha256(token.encode()).hexdigest()
        identity = await self._reviews.get(
            digest, lambda: self._review(token), lambda _: self.review_ttl
        )
        await self._check_pod(identity)
        return identity

    async def _review(self, token: str) -> Identity:
        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=[self.audience]))
        try:
            answer = await asyncio.to_thread(
                self._authn.create_token_review, body, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not review the token (HTTP {exc.status} {exc.reason})"
            ) from None
        except Exception as exc:  # urllib3 / socket errors
            raise KubernetesUnavailable(
                f"the Kubernetes API could not be reached to review the token "
                f"({type(exc).__name__})"
            ) from None
        status = answer.status.to_dict() if answer.status is not None else {}
        return identity_from_review(status, self.audience)

    async def _check_pod(self, identity: Identity) -> None:
        """The bound pod must exist with that uid and run as that ServiceAccount."""
        key = (identity.namespace, identity.pod_name)
        facts = await self._pods.get(key, lambda: self._read_pod(*key), lambda _: self.pod_ttl)
        if facts.uid != identity.pod_uid:
            again = " (another pod now has its name)" if facts.uid else ""
            raise TokenRejected(
                f"the token's pod {identity.namespace}/{identity.pod_name} no longer "
                f"exists{again}; a token of a deleted pod is not accepted"
            )
        if facts.service_account != identity.service_account:
            raise TokenRejected(
                f"pod {identity.namespace}/{identity.pod_name} runs as ServiceAccount "
                f"{facts.service_account!r}, not {identity.service_account!r}"
            )

    async def _read_pod(self, namespace: str, name: str) -> _PodFacts:
        try:
            pod = await asyncio.to_thread(
                self._core.read_namespaced_pod,
                name,
                namespace,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return _PodFacts(uid="", service_account="")
            raise KubernetesUnavailable(
                f"the Kubernetes API could not read pod {namespace}/{name} "
                f"(HTTP {exc.status} {exc.reason}); the injector needs get on pods"
            ) from None
        except Exception as exc:
            raise KubernetesUnavailable(
                f"the Kubernetes API could not be reached to read pod {namespace}/{name} "
                f"({type(exc).__name__})"
            ) from None
        meta, spec = pod.metadata, pod.spec
        return _PodFacts(
            uid=str(meta.uid or "") if meta is not None else "",
            service_account=str(spec.service_account_name or "default") if spec else "",
        )


@dataclass(frozen=True)
class _PodFacts:
    uid: str
    service_account: str


def _single(value: object) -> str:
    """Extras are lists of strings; a bound token carries exactly one pod name and uid."""
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 1:
        return str(value[0])
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
