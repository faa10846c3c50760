"""The fetch plan both halves agree on: the webhook writes it, the init container reads it."""

from plan.model import (
    PLAN_FORMAT,
    FileSpec,
    Plan,
    PlanError,
    SecretRef,
    SecretVersion,
    check_file_name,
)
from plan.template import render, template_refs

__all__ = [
    "PLAN_FORMAT",
    "FileSpec",
    "Plan",
    "PlanError",
    "SecretRef",
    "SecretVersion",
    "check_file_name",
    "render",
    "template_refs",
]
