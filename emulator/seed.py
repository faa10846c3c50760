"""Filling the emulator's store from a JSON seed file or command-line flags.

Seed format:
    {"vaults": [{"id": "110000000001", "name": "demo", "description": "",
                 "secrets": {"plain": "v", "rotated": ["v1", "v2"], "db": {"user": "app"}}}],
     "service_principals": [{"id": "113000000001",
                             "keys": [{"kid": "k1", "public_key": "-----BEGIN PUBLIC..."}]}]}
A list gives the versions in order; any other non-string JSON is stored as compact JSON text.
Service principals are optional: their keys' public halves, for the IAM token endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emulator.principals import Principals
from emulator.store import Store

DEFAULT_VAULT_ID = "110000000001"


class SeedError(ValueError):
    pass


def load_seed(data: Mapping[str, Any], store: Store, principals: Principals | None = None) -> None:
    vaults = data.get("vaults")
    if not isinstance(vaults, list):
        raise SeedError('the seed must be an object with a "vaults" list')
    for index, item in enumerate(vaults):
        if not isinstance(item, dict):
            raise SeedError(f"vaults[{index}] is not an object")
        vault_id = item.get("id")
        if vault_id is not None and not (isinstance(vault_id, str) and vault_id.isdigit()):
            raise SeedError(f'vaults[{index}].id must be a string of digits, e.g. "110000000001"')
        vault = store.add_vault(
            name=str(item.get("name", f"vault-{index}")),
            vault_id=vault_id,
            description=str(item.get("description", "")),
        )
        secrets = item.get("secrets", {})
        if not isinstance(secrets, dict):
            raise SeedError(f"vaults[{index}].secrets must map names to values")
        for name, value in secrets.items():
            versions = value if isinstance(value, list) else [value]
            for version in versions:
                store.put(vault.id, name, _text(version))
    if principals is not None:
        _load_principals(data.get("service_principals", []), principals)


def _load_principals(items: Any, principals: Principals) -> None:
    if not isinstance(items, list):
        raise SeedError('"service_principals" must be a list')
    for index, item in enumerate(items):
        where = f"service_principals[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise SeedError(f'{where} must be an object with a string "id"')
        keys = item.get("keys", [])
        if not isinstance(keys, list):
            raise SeedError(f"{where}.keys must be a list")
        for k, key in enumerate(keys):
            if not isinstance(key, dict):
                raise SeedError(f"{where}.keys[{k}] is not an object")
            try:
                principals.add_key(
                    item["id"], str(key.get("kid", "")), str(key.get("public_key", ""))
                )
            except ValueError as exc:
                raise SeedError(f"{where}.keys[{k}]: {exc}") from None


def load_seed_file(path: str | Path, store: Store, principals: Principals | None = None) -> None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SeedError(f"seed file {path} is not a JSON object")
    load_seed(data, store, principals)


def apply_flags(vaults: Iterable[str], secrets: Iterable[str], store: Store) -> None:
    """`--vault ID[=NAME]` and `--secret [VAULT_ID/]NAME=VALUE` (repeat for more versions)."""
    for text in vaults:
        vault_id, _, name = text.partition("=")
        if not vault_id.isdigit():
            raise SeedError(f"--vault {text!r}: write ID or ID=NAME with a numeric ID")
        store.add_vault(name=name or f"vault-{vault_id}", vault_id=vault_id)
    for text in secrets:
        target, sep, value = text.partition("=")
        if not sep or not target:
            raise SeedError(f"--secret {text!r}: write NAME=VALUE or VAULT_ID/NAME=VALUE")
        vault_id, slash, name = target.partition("/")
        if not slash:
            vault_id, name = _default_vault(store), target
        store.add_vault(name=f"vault-{vault_id}", vault_id=vault_id)
        store.put(vault_id, name, value)


def _default_vault(store: Store) -> str:
    existing = store.vaults()
    return existing[0].id if existing else DEFAULT_VAULT_ID


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
