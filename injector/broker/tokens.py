"""Who is calling: a projected ServiceAccount token verified with a TokenReview.

The identity (namespace, ServiceAccount, pod) comes only from the API server's answer, never
from the request body. Only bound tokens (projected into a pod, with the pod's name and uid
in the review's extras) for our audience are accepted, and the pod must still exist: the API
server checks that for each TokenReview, the broker by reading the pod once a remembered
review is older than `pod_ttl`.

What cannot be such a token costs no TokenReview: a token that is not a JWT for our audience
with an expiry still ahead is refused first, and a token the API server rejected is
remembered (by its SHA-256) for `reject_ttl`. The reviews and pod reads wait in the bounded
pool of Kubernetes calls (`injector.kube.kubernetes_calls`), TokenReviews in the lane of the
client's address (which a forger cannot choose), pod reads in the lane of the verified
namespace.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from contract.pod import TOKEN_AUDIENCE as AUDIENCE
from injector.broker.errors import TokenRejected
from injector.broker.memo import ExpiringMemo
from injector.fair_queue import FairQueue
from injector.kube import KUBE_TIMEOUT, KubernetesUnavailable, call_kubernetes, kubernetes_calls

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MAX_TOKEN_LENGTH = 16 * 1024
CLOCK_SKEW = 60.0
"""Seconds a token's `exp` may be behind our clock before we refuse it without asking."""
API_SERVER_REVIEW_CACHE = 10.0
"""Seconds kube-apiserver may answer a TokenReview from its cache of successful
authentications (`TokenSuccessCacheTTL`, 10 s) instead of checking the bound pod again: a
fresh acceptance proves the pod existed at most this long ago."""

log = logging.getLogger(__name__)


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


def refuse_non_jwt(token: str, audience: str, now: float) -> float:
    """Refuse, before any TokenReview, what cannot be a projected token for `audience`;
    return its expiry (`exp`, Unix seconds).

    The token must be a JWT (three base64url parts, JSON header and payload) whose `aud`
    holds `audience` and whose `exp` is not past (`now`, Unix seconds, with CLOCK_SKEW). The
    payload is read WITHOUT verifying the signature: that and every other check stay the API
    server's, through the TokenReview that follows; this only spares it the garbage.
    """
    if token.count(".") != 2:  # counted here, not left to the PyJWT version installed
        raise _not_a_jwt()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _not_a_jwt() from None
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise _wrong_audience(audience)
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenRejected(
            "the token has no expiry; use the projected token the injector mounts "
            "(serviceAccountToken volume), not a long-lived ServiceAccount Secret token"
        )
    if exp + CLOCK_SKEW <= now:
        raise TokenRejected(
            "the token has expired; read the projected token file again before each request "
            "(the kubelet renews it)"
        )
    return float(exp)


def _not_a_jwt() -> TokenRejected:
    return TokenRejected(
        "the bearer token is not a JWT (three base64url parts with a JSON header and payload); "
        "send the pod's projected ServiceAccount token"
    )


def _wrong_audience(audience: str) -> TokenRejected:
    return TokenRejected(
        f"the token is not for audience {audience!r}; project it with "
        f"serviceAccountToken.audience: {audience}"
    )


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
        raise _wrong_audience(audience)
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
    """Verifies tokens against the API server; answers are remembered by the token's SHA-256
    (never the token): an acceptance for `review_ttl` but never past the token's own expiry, a
    rejection for `reject_ttl`. A fresh acceptance proves the bound pod existed at most
    API_SERVER_REVIEW_CACHE ago (the API server checks it), so the pod is first read once
    that proof is `pod_ttl` old and every `pod_ttl` after that: a deleted pod's token stops
    working within `pod_ttl`, however long its review is remembered.

    The memory holds at most 10,000 answers (the oldest go first), so a flood of garbage
    cannot fill it; garbage that is not even a JWT for our audience is never reviewed.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        audience: str = AUDIENCE,
        review_ttl: float = 300.0,
        reject_ttl: float = 30.0,
        pod_ttl: float = 30.0,
        request_timeout: float = KUBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        calls: FairQueue | None = None,
        reviews: TokenReviews | None = None,
        pods: PodReader | None = None,
    ) -> None:
        """`calls` is the pool of Kubernetes calls (a private one when None); `reviews` and
        `pods` replace the API client's calls (a test's fakes of the API)."""
        self.audience = audience
        self.review_ttl = review_ttl
        self.reject_ttl = reject_ttl
        self.pod_ttl = pod_ttl
        self.request_timeout = request_timeout
        self._wall_clock = wall_clock
        self._calls = calls if calls is not None else kubernetes_calls()
        self._authn = reviews if reviews is not None else k8s.AuthenticationV1Api(api_client)
        self._core = pods if pods is not None else k8s.CoreV1Api(api_client)
        self._reviews: ExpiringMemo[str, Identity | str] = ExpiringMemo(clock=clock)
        self._pods: ExpiringMemo[tuple[str, str], _PodFacts] = ExpiringMemo(clock=clock)

    async def verify(self, token: str, *, client: str = "") -> Identity:
        """The identity of a pod's bound token for our audience; TokenRejected otherwise.

        `client` is the caller's address: its TokenReviews take turns in its own lane.
        """
        token = token.strip()
        if not token:
            raise TokenRejected(
                "no token; send 'Authorization: Bearer <projected ServiceAccount token>'"
            )
        if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise TokenRejected("the bearer token is malformed")
        expires = refuse_non_jwt(token, self.audience, self._wall_clock())
        digest = hashlib.sha256(token.encode()).hexdigest()
        outcome = await self._reviews.get(
            digest,
            lambda: self._review(token, client),
            lambda known: self._lifetime(known, expires),
        )
        if not isinstance(outcome, Identity):
            raise TokenRejected(outcome)
        await self._check_pod(outcome)
        return outcome

    def _lifetime(self, outcome: Identity | str, expires: float) -> float:
        """How long a review's answer is remembered: an acceptance never past the expiry."""
        if not isinstance(outcome, Identity):
            return self.reject_ttl
        return min(self.review_ttl, expires - self._wall_clock())

    async def _review(self, token: str, client: str) -> Identity | str:
        """The identity, or why the API server rejected the token (remembered alike)."""
        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=[self.audience]))
        try:
            answer = await call_kubernetes(
                self._calls,
                ("client", client),
                lambda: self._authn.create_token_review(
                    body, _request_timeout=self.request_timeout
                ),
            )
        except KubernetesUnavailable:
            raise
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
        try:
            identity = identity_from_review(status, self.audience)
        except TokenRejected as rejected:
            return str(rejected)
        # The API server accepts a bound token only while its pod exists with that uid, and
        # issues one only for a pod of that ServiceAccount (whose spec cannot change): the
        # acceptance is a pod read at most API_SERVER_REVIEW_CACHE old, kept as one for what
        # is left of `pod_ttl` (docs/broker.md, "What a pod costs").
        facts = _PodFacts(uid=identity.pod_uid, service_account=identity.service_account)
        seconds = self.pod_ttl - API_SERVER_REVIEW_CACHE
        self._pods.put((identity.namespace, identity.pod_name), facts, seconds)
        return identity

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
            pod = await call_kubernetes(
                self._calls,
                ("namespace", namespace),
                lambda: self._core.read_namespaced_pod(
                    name, namespace, _request_timeout=self.request_timeout
                ),
            )
        except KubernetesUnavailable:
            raise
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
