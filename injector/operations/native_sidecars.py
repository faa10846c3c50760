"""Whether the refresh container is a native sidecar: `--native-sidecars=auto|always|never`.

Native sidecars (an init container with `restartPolicy: Always`) are on by default from
Kubernetes 1.29; an older API server drops the field it does not know, and the container then
blocks the pod's start forever. `auto` (the default) therefore asks the API server its version
(`GET /version`) at start-up and every `RECHECK_EVERY` seconds, so an upgrade is followed
without a restart: 1.29 or later means native. A version that cannot be read at start-up means
the plain shape (said in the log); a later failure keeps the last answer. The webhook's core
only ever sees the answer (`WebhookSettings.native_sidecars`). docs/webhook.md explains it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

MODES = ("auto", "always", "never")
"""The values of `--native-sidecars`."""
FIRST_NATIVE = (1, 29)
"""The first Kubernetes version with native sidecars on by default (SidecarContainers beta)."""
RECHECK_EVERY = 600.0
"""Seconds between two reads of the API server's version."""
_LEADING_NUMBER = re.compile(r"^[0-9]+")

log = logging.getLogger(__name__)


def native_from_version(major: str, minor: str) -> bool:
    """True from 1.29 on. Managed clusters may append to the minor ("29+", GKE and EKS);
    ValueError when either part does not start with a number."""
    return release_of(major, minor) >= FIRST_NATIVE


def release_of(major: str, minor: str) -> tuple[int, int]:
    """(major, minor) as numbers, whatever a managed cluster appends to the minor ("29+");
    ValueError when either part does not start with a number."""
    numbers = [_LEADING_NUMBER.match(part.strip()) for part in (major, minor)]
    if numbers[0] is None or numbers[1] is None:
        raise ValueError(f"version {major!r}.{minor!r} is not MAJOR.MINOR")
    return (int(numbers[0].group()), int(numbers[1].group()))


class NativeSidecars:
    """`auto`: the answer read from the API server's version, now and every `every` seconds.

    Called (`watch()`) on each review; `read_version` blocks (bounded by its own timeout) and
    runs at start-up and then on a thread of its own, never on the event loop.
    """

    def __init__(
        self, read_version: Callable[[], tuple[str, str]], *, every: float = RECHECK_EVERY
    ) -> None:
        self.read_version = read_version
        self.every = every
        self.native = False
        self.version: str | None = None
        """The last version read, e.g. "1.29+"; None until one was."""
        self.release: tuple[int, int] | None = None
        """The last version read as numbers, e.g. (1, 29): what other gates compare
        (`injector.operations.env_files`); None until one was."""
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> bool:
        return self.native

    def refresh(self) -> bool:
        """Read the version once; on failure keep the last answer (plain until one)."""
        try:
            major, minor = self.read_version()
            release = release_of(major, minor)
            native = release >= FIRST_NATIVE
        except Exception as exc:  # any failure: keep the shape pods get now
            if not self._failing:
                log.warning(
                    "cannot read the Kubernetes API server's version (%s: %s); the refresh "
                    "container stays %s until it can (--native-sidecars=auto; set always or "
                    "never to decide without it)",
                    type(exc).__name__,
                    exc,
                    _shape(self.native),
                )
            self._failing = True
            return self.native
        self._failing = False
        version = f"{major}.{minor}"
        if version != self.version:
            log.info(
                "Kubernetes API server %s: the refresh container is %s", version, _shape(native)
            )
        self.version, self.native, self.release = version, native, release
        return native

    def start(self) -> None:
        """Read now (pods admitted from the start get the right shape), then on a thread."""
        if self._thread is not None:
            return
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="native-sidecars", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        """`stop`, as `serve` calls what it closes at shutdown."""
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.refresh()


def _shape(native: bool) -> str:
    return "a native sidecar" if native else "a plain container (classic shape)"
