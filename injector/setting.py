"""The one error a setting's own constructor raises for a value outside its range.

`ConnectionLimits`, `BrokerTuning` and `Policy` check themselves when built, wherever the
values come from; the message names the field (`header_timeout must be above 0 seconds`).
`setting` and `rule` let the command line say the same with the flag and the value given
(`--header-timeout 0 must be above 0 seconds`).
"""

from __future__ import annotations


class OutOfRange(ValueError):
    """`setting` (a field's name) may not take its value: `rule` says what it must be, and may
    name other fields it is measured against."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{setting} {rule}")
        self.setting = setting
        self.rule = rule
