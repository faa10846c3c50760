"""The emulator's in-memory vaults and versioned secrets, safe to share across threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

MAX_VALUE_BYTES = 65_536
MAX_NAME_LENGTH = 255
JST = timezone(timedelta(hours=9))


class VaultNotFound(LookupError):
    pass


class SecretNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def now_iso() -> str:
    return datetime.now(JST).isoformat()


@dataclass
class Vault:
    id: str
    name: str
    description: str = ""
    kms_key_id: str = ""
    tags: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    modified_at: str = field(default_factory=now_iso)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    """Secret name -> its values; version n is item n-1."""

    def to_json(self) -> dict[str, object]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Description": self.description,
            "KmsKeyID": self.kms_key_id,
            "Tags": list(self.tags),
            "CreatedAt": self.created_at,
            "ModifiedAt": self.modified_at,
        }


class Store:
    """Vaults by ID. Every write of a secret appends a version, as Sakura does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vaults: dict[str, Vault] = {}
        self._next_id = 110_000_000_001

    def add_vault(self, name: str, vault_id: str | None = None, description: str = "") -> Vault:
        with self._lock:
            if vault_id is None:
                while str(self._next_id) in self._vaults:
                    self._next_id += 1
                vault_id = str(self._next_id)
            if vault_id in self._vaults:
                return self._vaults[vault_id]
            vault = Vault(id=vault_id, name=name, description=description)
            self._vaults[vault_id] = vault
            return vault

    def vaults(self) -> list[Vault]:
        with self._lock:
            return list(self._vaults.values())

    def vault(self, vault_id: str) -> Vault:
        with self._lock:
            return self._vault(vault_id)

    def put(self, vault_id: str, name: str, value: str) -> int:
        with self._lock:
            versions = self._vault(vault_id).secrets.setdefault(name, [])
            versions.append(value)
            return len(versions)

    def get(self, vault_id: str, name: str, version: int | None = None) -> tuple[int, str]:
        """(version, value); the latest when `version` is None."""
        with self._lock:
            versions = self._vault(vault_id).secrets.get(name)
            if not versions:
                raise SecretNotFound(name)
            if version is None:
                return len(versions), versions[-1]
            if not 1 <= version <= len(versions):
                raise SecretNotFound(name)
            return version, versions[version - 1]

    def delete(self, vault_id: str, name: str) -> None:
        with self._lock:
            if self._vault(vault_id).secrets.pop(name, None) is None:
                raise SecretNotFound(name)

    def secrets(self, vault_id: str) -> list[tuple[str, int]]:
        """(name, latest version) of every secret in the vault."""
        with self._lock:
            return [(n, len(v)) for n, v in self._vault(vault_id).secrets.items()]

    def _vault(self, vault_id: str) -> Vault:
        vault = self._vaults.get(vault_id)
        if vault is None:
            raise VaultNotFound(vault_id)
        return vault
