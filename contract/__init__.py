"""The fetch plan both halves agree on: the webhook writes it, the init container reads it."""

from contract.plan import (
    MAX_PLAN_BYTES,
    MAX_SECRETS,
    PLAN_FORMAT,
    Broker,
    Direct,
    FileSpec,
    Mode,
    Plan,
    PlanError,
    SecretRef,
    SecretVersion,
    check_file_name,
)
from contract.template import render, template_refs, template_tokens

__all__ = [
    "MAX_PLAN_BYTES",
    "MAX_SECRETS",
    "PLAN_FORMAT",
    "Broker",
    "Direct",
    "FileSpec",
    "Mode",
    "Plan",
    "PlanError",
    "SecretRef",
    "SecretVersion",
    "check_file_name",
    "render",
    "template_refs",
    "template_tokens",
]
