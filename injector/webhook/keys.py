"""The annotation keys the rest of the core reads by name (the others are parsed where used).

A leaf module: annotations.py, files.py and selection.py all read these, and none of them
may import another for a constant (that made import cycles).
"""

from __future__ import annotations

PREFIX = "sakura-secrets.io/"
INJECT = PREFIX + "inject"
"""Set to "true" by the pod's owner to ask for injection."""
STATUS = PREFIX + "status"
"""Written by the injector ("injected"), so a reinvoked webhook leaves the pod alone."""
STATUS_INJECTED = "injected"
STATUS_WARNINGS = PREFIX + "status-warnings"
"""Written by the injector: the admission warnings about the pod, one a line, where its
owner sees them (`kubectl describe pod`); the admission answer's warnings reach only whoever
created the pod, for a Deployment the ReplicaSet controller."""
