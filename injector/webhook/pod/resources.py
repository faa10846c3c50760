"""Resources of the injected init container: small defaults and Kubernetes quantity syntax.

Quantities are checked here so a typo is a clear denial at admission, not an API-server
validation error after the patch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity such as `50m`, `0.5`, `64Mi` or `1e3`.

    Raises ValueError saying what is accepted; negative and zero amounts are refused because
    they make no sense as a container's requests or limits.
    """
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity; "
            "write e.g. 50m or 0.5 (cpu), 64Mi or 1G (memory)"
        )
    number = Decimal(match.group("number"))
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        value = number * _BINARY[suffix]
    elif suffix in _DECIMAL:
        value = number.scaleb(_DECIMAL[suffix])
    elif suffix:
        value = number.scaleb(int(suffix[1:]))
    else:
        value = number
    if value <= 0:
        raise ValueError(f"{text!r} is zero; give an amount greater than zero")
    return value


@dataclass(frozen=True)
class Resources:
    """Requests and limits of the injected container; the defaults fit a one-shot fetch."""

    cpu_request: str = "50m"
    cpu_limit: str = "500m"
    memory_request: str = "64Mi"
    memory_limit: str = "128Mi"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }
