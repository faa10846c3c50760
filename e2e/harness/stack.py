"""The running pieces of one e2e run, as the fixtures hand them to the scenarios."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.app import Emulator
from harness import manifests
from harness.kube import Kube
from harness.webhooks import injector_webhook
from injector.operations.certs import KeyPair


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class Sakura:
    """The emulator as Sakura, with this run's secret values (random, so a leak is findable)."""

    url: str
    emulator: Emulator
    vault_id: str
    values: dict[str, Any]
    token: str = field(repr=False, default="")
    token_secret: str = field(repr=False, default="")
    other_vault: dict[str, str] = field(default_factory=dict)
    """The values of the second vault (OTHER_VAULT_ID), which no test grants."""

    def leaf_values(self) -> list[str]:
        """Every secret text a leak check must not find (JSON values: each field too)."""
        out: list[str] = list(self.other_vault.values())
        for value in self.values.values():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    out += [str(v) for v in item.values()]
                    out.append(json.dumps(item, separators=(",", ":")))
                else:
                    out.append(str(item))
        return out


@dataclass(frozen=True)
class Injector:
    """The injector the harness runs on the host: its two ports, its log, and the CA whose
    client certificates its webhook port requires (None: it requires none)."""

    webhook_url: str
    """POST /mutate; the API server's only way in."""
    broker_url: str
    """POST /v1/secrets, /healthz, /readyz, /metrics; never asks for a client certificate."""
    log: Path
    client_ca: Path | None = None
    restart: Callable[[], None] = field(default=lambda: None, compare=False, repr=False)
    """Stop the process (SIGTERM) and start it again on the same ports, with the serving
    certificate and key files as they are now (a renewal writes new ones first)."""


@dataclass
class Webhook:
    """The injector's registration for this run; `namespace()` makes namespaces it selects."""

    kube: Kube
    run_id: str
    config_name: str
    pki: Pki
    injector: Injector
    created: list[str] = field(default_factory=list)

    def namespace(self, purpose: str, *, injection: bool = True) -> str:
        name = f"sakura-e2e-{self.run_id}-{purpose}"
        self.kube.apply(manifests.namespace(name, self.run_id, injection=injection))
        self.created.append(name)
        self.kube.wait_for(
            f"default ServiceAccount in {name}",
            lambda: self.kube.run("get", "sa", "default", "-n", name, check=False).returncode == 0,
            timeout=60,
        )
        return name

    def admitted(self) -> int:
        """How often the API server has called the injector's webhook (its own metric)."""
        name = injector_webhook(self.config_name, "", b"", self.run_id)["webhooks"][0]["name"]
        total = 0
        for line in self.kube.raw("/metrics").splitlines():
            if line.startswith(
                "apiserver_admission_webhook_admission_duration_seconds_count{"
            ) and (f'name="{name}"' in line):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total
