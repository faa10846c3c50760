"""What the two halves agree on, written once; the init container imports it, so it stays light:
the standard library only. template.py is the exception (jinja2 costs about as much start-up time
as httpx), so it is not re-exported here: import `contract.template` where a template is scanned
or rendered (the webhook; the init container only for a plan with a template).

- plan.py: the fetch plan the webhook writes and the init container reads;
- env_file.py: the env file of `env-VAR` variables, in the format the kubelet reads;
- template.py: scanning a template at admission, rendering it in the init container;
- annotations.py: every annotation key;
- pod.py: the init container's name, environment, token, volumes and termination path;
- broker.py: the broker's path, request, answer, refusal and reason codes;
- errors.py: what both halves refuse, in one tree;
- encoding.py: base64, for a value decoded into a binary file and the templates' filters;
- file_names.py: the names a file may have on disk (`file-name-FILE`), and the record's.
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
]
