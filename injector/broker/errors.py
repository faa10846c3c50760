"""Every way the broker refuses, in one tree; the HTTP shell (`injector.serving.broker_routes`)
alone turns each kind into a status, a `reason` and a Retry-After header.

    BrokerError                  a request for secrets is refused; `message` is one line that
    │                            names the fix and never carries a value
    ├── TokenRejected            the token does not prove a pod's identity
    ├── AccessDenied             the pod's ServiceAccount lacks a grant (RBAC)
    ├── SecretAbsent             the vault, the secret or the version does not exist
    ├── ReviewUnavailable        the Kubernetes API could not answer a review: retry
    └── SecretsUnavailable       Sakura gave no value and none recent is held: retry
        ├── CredentialsRejected  Sakura refused the injector's own key: waiting will not help
        └── NamespaceCrowded     the namespace has as many reads waiting for Sakura as it may
    CanIUsageError               `can-i` was not given a namespace, a ServiceAccount and secrets,
                                 or `who-can` a VAULT_ID/NAME, or Kubernetes did not answer it

`injector.kube.KubernetesUnavailable` (the API server did not answer) is raised by the
reviewers and becomes a ReviewUnavailable at the broker's door.
"""

from __future__ import annotations


class BrokerError(Exception):
    """A refusal; `retry_after` (seconds) says when asking again may succeed, if it may."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class TokenRejected(BrokerError):
    """The token does not prove a pod's identity; the message says why."""


class AccessDenied(BrokerError):
    """The pod's ServiceAccount may not get the vault or a secret's pair; the message names
    the grant to add."""


class SecretAbsent(BrokerError):
    """The vault, a secret or a pinned version does not exist; the message names the fix."""


class ReviewUnavailable(BrokerError):
    """The Kubernetes API could not review the token or the access now."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class SecretsUnavailable(BrokerError):
    """Sakura could not give a value and no recent one is held."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class CredentialsRejected(SecretsUnavailable):
    """Sakura refused the injector's key (401/403): the operator must fix it, and the init
    container is told so instead of retrying."""


class NamespaceCrowded(SecretsUnavailable):
    """The namespace already has as many reads waiting for Sakura's quota as it may."""


class CanIUsageError(ValueError):
    """The arguments are not a namespace, a ServiceAccount and secret names (`can-i`) or a
    pair (`who-can`); `who-can` also says so when it cannot list RBAC objects."""
