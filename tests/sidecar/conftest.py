"""Fixtures of the init fetcher tests; defined in support.sidecar_harness beside its helpers."""

from support.sidecar_harness import (
    broker,
    broker_env,
    broker_url,
    direct_env,
    emulator,
    sakura_url,
    secrets_dir,
    termination_log,
    tls,
    token_file,
)

__all__ = [
    "broker",
    "broker_env",
    "broker_url",
    "direct_env",
    "emulator",
    "sakura_url",
    "secrets_dir",
    "termination_log",
    "tls",
    "token_file",
]
