"""The broker's checks at admission: RBAC on the vault and each secret's pair, and existence.

A pod that would fail at start-up is refused at `kubectl apply` time instead, with the
missing grant or the missing secret named. Sakura being unreachable never blocks a
rollout: the pod is admitted with a warning and the broker checks again at fetch time.
"""

from __future__ import annotations

import asyncio
import logging

from contract import Direct, Plan, SecretVersion
from contract.annotations import SECRET_FILE, TEMPLATE_FILE, VAULT_ID
from injector.broker.access import AccessReviewer, Subject
from injector.broker.inventory import VaultInventory
from injector.kube import KubernetesUnavailable
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import ReasonCode
from sakura import NotFound, SakuraError, Unauthorized

log = logging.getLogger(__name__)


class BrokerAdmissionCheck:
    """The real AdmissionCheck (injector.webhook.checks.AdmissionCheck) in broker mode."""

    def __init__(
        self, access: AccessReviewer, inventory: VaultInventory, *, timeout: float
    ) -> None:
        """`timeout`: seconds for the RBAC and existence lookups together (the broker's
        --admission-timeout; its default lives with the other settings)."""
        self.access = access
        self.inventory = inventory
        self.timeout = timeout

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        if isinstance(plan.mode, Direct):
            # the pod reads Sakura with its own credentials: RBAC here grants nothing
            return CheckOutcome()
        wanted = plan.secrets()
        subject = Subject.of(namespace, service_account)
        # one budget for both lookups: the API server stops waiting for the webhook after
        # its timeoutSeconds, however the time was spent
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            missing = await asyncio.wait_for(
                self.access.missing(subject, plan.vault_id, (s.name for s in wanted)),
                self.timeout,
            )
        except (KubernetesUnavailable, TimeoutError) as exc:
            # unauthorized, existence is nobody's business: it is not looked up either
            reason = str(exc) or f"no answer within {self.timeout:g}s"
            return CheckOutcome(
                warnings=(
                    f"could not check access to the secrets now ({reason}); the injector "
                    "checks access and existence again when the pod starts",
                )
            )
        if missing:
            # before any Sakura call: a pod without the vault grant learns nothing of it
            return CheckOutcome(denial=missing.message())
        try:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            problem = await asyncio.wait_for(self._missing(plan, wanted, namespace), remaining)
        except NotFound as exc:
            if exc.kind == "vault":
                return CheckOutcome(
                    denial=f"vault {plan.vault_id} does not exist (or the injector's API key "
                    f"cannot see it); fix the {VAULT_ID} annotation",
                    reason_code=ReasonCode.SECRET_MISSING,
                )
            return CheckOutcome(warnings=(f"the secrets could not be listed ({exc})",))
        except Unauthorized as exc:
            log.warning("admitting without the existence check: %s", exc)
            return CheckOutcome(
                warnings=(
                    f"Sakura rejected the injector's credentials ({exc}); the pod is admitted, "
                    "but its init container cannot fetch until the injector's operator fixes "
                    "the injector's API key",
                )
            )
        except (SakuraError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.timeout:g}s"
            log.warning("admitting without the existence check: %s", reason)
            return CheckOutcome(
                warnings=(
                    f"Sakura could not be reached to check that the secrets exist ({reason}); "
                    "the pod is admitted and its init container reports any missing secret",
                )
            )
        if problem is None:
            return CheckOutcome()
        return CheckOutcome(denial=problem, reason_code=ReasonCode.SECRET_MISSING)

    async def _missing(
        self, plan: Plan, wanted: tuple[SecretVersion, ...], namespace: str
    ) -> str | None:
        """A denial naming the first secret or version that does not exist, or None.

        Sakura's quota is spent in the pod's namespace's turn (the rate limiter's tenant); a
        secret missing from a listing older than the inventory's `negative_ttl` is looked up
        again (it may be new).
        """
        vault, tenant = plan.vault_id, namespace
        latest = await self.inventory.latest(vault, tenant=tenant)
        if any(_absent(latest, s) for s in wanted):
            recheck = self.inventory.negative_ttl
            latest = await self.inventory.latest(vault, max_age=recheck, tenant=tenant)
        for secret in wanted:
            if not _absent(latest, secret):
                continue
            where = _annotations_using(plan, secret)
            if secret.name not in latest:
                return (
                    f"{where} asks for secret {secret.name!r}, which does not exist in vault "
                    f"{plan.vault_id}; create it in Sakura's Secret Manager or fix the name"
                )
            # never the latest version's number: a denial tells no more than that this
            # version is not there (the webhook answers whoever can reach it)
            return (
                f"{where} asks for version {secret.version} of secret {secret.name!r}, which "
                f"does not exist in vault {plan.vault_id}; pin an existing version or drop the "
                "@VERSION"
            )
        return None


def _absent(latest: dict[str, int], secret: SecretVersion) -> bool:
    have = latest.get(secret.name)
    return have is None or (secret.version is not None and secret.version > have)


def _annotations_using(plan: Plan, secret: SecretVersion) -> str:
    """The annotations of the files that read `secret` (every secret of a plan has one)."""
    names = [
        f"{SECRET_FILE if f.secret is not None else TEMPLATE_FILE}{f.name}"
        for f in plan.files
        if any(r.fetch == secret for r in f.refs)
    ]
    return "annotation " + ", ".join(names)
