"""Kubernetes quantity syntax (`50m`, `64Mi`, `1e3`), for the init container's resources and
the secrets volume's size limit.

Quantities are checked here so a typo is a clear denial at admission (or a clear error at
start-up), not an API-server validation error after the patch.
"""

from __future__ import annotations

import re
from decimal import Decimal

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
