"""The path of a secret through the broker, in order: verify token -> authorize -> fetch.

A refresh (a request that holds versions) takes the same path, token and grants checked
every time; a held version that is still the latest is answered `Unchanged`, without a value.

Every refusal is a `BrokerError` of the kind that says why (errors.py); its one-line message
goes to the init container as it is and never carries a secret value.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from contract import SecretVersion
from contract.annotations import VAULT_ID, short_name
from contract.broker import Answer, AnswerItem, FetchedSecret, SecretRequest, Unchanged
from injector.broker.access import AccessReviewer, Subject
from injector.broker.audit import audit_failed, audit_refused, audit_served, refusal_event
from injector.broker.cache import SecretCache
from injector.broker.errors import (
    AccessDenied,
    BrokerError,
    ReviewUnavailable,
    SecretAbsent,
    TokenRejected,
)
from injector.broker.metrics import BrokerAnswers
from injector.broker.tokens import Identity, TokenReviewer
from injector.event_recorder import EventRecorder
from injector.kube import KubernetesUnavailable
from sakura import NotFound, Unveiled

KUBERNETES_RETRY_AFTER = 5.0
"""Seconds after which a request refused because Kubernetes could not answer may be retried."""


class Broker:
    """Answers an init container's request for the values of its plan's secrets."""

    def __init__(
        self,
        tokens: TokenReviewer,
        access: AccessReviewer,
        cache: SecretCache,
        events: EventRecorder | None = None,
        answers: BrokerAnswers | None = None,
    ) -> None:
        """`events`, when given, records an Event on the pod for each refusal of it;
        `answers` counts what was answered (default: a counter in a registry of its own)."""
        self.tokens = tokens
        self.access = access
        self.cache = cache
        self.events = events
        self.answers = answers if answers is not None else BrokerAnswers(CollectorRegistry())

    async def fetch(self, token: str, request: SecretRequest, *, client: str = "") -> Answer:
        """One answer item per requested secret, in order; a BrokerError (errors.py) otherwise.

        `client` is the caller's address, the lane its TokenReview waits in. Every answer
        and refusal is one audit line (`injector.broker.audit`)."""
        # 1. who is asking: only the API server's answer counts
        try:
            identity = await self.tokens.verify(token, client=client)
        except TokenRejected as exc:
            audit_refused(None, request, client, exc)
            self.answers.refused("", exc)
            raise
        except KubernetesUnavailable as exc:
            unavailable = ReviewUnavailable(str(exc), retry_after=KUBERNETES_RETRY_AFTER)
            audit_refused(None, request, client, unavailable)
            self.answers.refused("", unavailable)
            raise unavailable from None
        try:
            answer = await self._answer(identity, request)
        except BrokerError as exc:
            audit_refused(identity, request, client, exc)
            self.answers.refused(identity.namespace, exc)
            if self.events is not None:
                self.events.record(refusal_event(identity, exc))
            raise
        except Exception:
            audit_failed(identity, request, client)
            raise
        audit_served(identity, request, answer, client)
        self.answers.answered(answer)
        return answer

    async def _answer(self, identity: Identity, request: SecretRequest) -> Answer:
        # 2. may it read this vault, and each secret in it: RBAC in the pod's namespace
        subject = Subject(identity.namespace, identity.service_account, identity.groups)
        try:
            missing = await self.access.missing(
                subject, request.vault_id, (s.name for s in request.secrets)
            )
        except KubernetesUnavailable as exc:
            raise ReviewUnavailable(str(exc), retry_after=KUBERNETES_RETRY_AFTER) from None
        if missing:
            raise AccessDenied(missing.message())

        # 3. fetch through the shared cache (what is known missing is refused first, at once)
        for wanted in request.secrets:
            absent = self.cache.known_missing(request.vault_id, wanted.name, wanted.version)
            if absent is not None:
                raise SecretAbsent(_not_found(request.vault_id, str(wanted), absent))
        reads = await asyncio.gather(
            *(self._read(request, s, identity.namespace) for s in request.secrets),
            return_exceptions=True,
        )
        items: list[AnswerItem] = []
        for wanted, got in zip(request.secrets, reads, strict=True):
            if isinstance(got, NotFound):
                raise SecretAbsent(_not_found(request.vault_id, str(wanted), got))
            if isinstance(got, BaseException):  # SecretsUnavailable and its kinds too
                raise got
            if got is None:  # a held version, still the latest
                items.append(Unchanged(wanted.name, request.held[wanted.name]))
            else:
                items.append(FetchedSecret(wanted.name, wanted.version, got.version, got.value))
        return Answer(identity.namespace, tuple(items))

    async def _read(
        self, request: SecretRequest, wanted: SecretVersion, tenant: str
    ) -> Unveiled | None:
        """The value asked for; None for a held version that is still the latest."""
        if wanted.version is None:
            held = request.held.get(wanted.name)
            return await self.cache.refresh(request.vault_id, wanted.name, held, tenant=tenant)
        return await self.cache.read(request.vault_id, wanted.name, wanted.version, tenant=tenant)


def _not_found(vault_id: str, label: str, error: NotFound) -> str:
    if error.kind == "vault":
        return (
            f"vault {vault_id} was not found (or the injector's API key cannot see it); "
            f"fix the {short_name(VAULT_ID)} annotation"
        )
    if error.kind == "version":  # never the latest version: that is the vault's to tell
        return (
            f"secret {label!r} has no such version in vault {vault_id}; pin an existing "
            "version or drop the @VERSION"
        )
    return (
        f"secret {label!r} does not exist in vault {vault_id}; create it in Sakura's Secret "
        "Manager or fix the annotation"
    )
