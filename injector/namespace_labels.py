"""The `namespace` label of the injector's metrics, with its number of values bounded.

Namespaces are not secret, but not every namespace a metric hears of is real: the webhook
port may be reachable by a tenant who posts made-up AdmissionReviews, one invented namespace
each. Every series costs Prometheus memory for as long as it is kept, so each metric family
that carries a namespace takes it through one `NamespaceLabels`: a name that is not a valid
namespace name (a DNS label) and any new name past the first `limit` become `OTHER`, which
no namespace can be called (an underscore is not allowed in one). The empty name stays empty:
it is "no verified namespace" (a broker request whose token was rejected).
"""

from __future__ import annotations

import re
import threading

OTHER = "_other"
"""The label of every namespace past the bound, and of names no namespace can have."""
LIMIT = 1000
"""Distinct namespaces one metric family names before it files the rest under OTHER."""
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class NamespaceLabels:
    """Hands out at most `limit` distinct namespace labels, first come first named."""

    def __init__(self, limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> str:
        """The label for `namespace`: itself, "" for none, or OTHER (invalid or past the bound)."""
        if not namespace:
            return ""
        if not _DNS_LABEL.fullmatch(namespace):
            return OTHER
        with self._lock:
            if namespace in self._named:
                return namespace
            if len(self._named) >= self.limit:
                return OTHER
            self._named.add(namespace)
            return namespace
