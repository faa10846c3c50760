"""What the two halves agree on, written once; the init container imports it, so it stays light
(the standard library, and jinja2 only where a template is rendered).

- plan.py, template.py: the fetch plan the webhook writes and the init container reads;
- annotations.py: every annotation key;
- pod.py: the init container's name, environment, token, volumes and termination path;
- broker.py: the broker's path, request, answer, refusal and reason codes;
- errors.py: what both halves refuse, in one tree.
"""

from contract.errors import PlanError
from contract.plan import (
    MAX_PLAN_BYTES,
    MAX_SECRETS,
    PLAN_FORMAT,
    Broker,
    Direct,
    FileSpec,
    Mode,
    Plan,
    SecretRef,
    SecretVersion,
    check_file_name,
    parse_duration,
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
    "parse_duration",
    "render",
    "template_refs",
    "template_tokens",
]
