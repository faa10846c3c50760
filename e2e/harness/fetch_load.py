"""Load on an installed injector while something changes under it (its key rotated): broker
fetches with a pod's bound token on a few threads, and /readyz on the probe port, each failure
kept with its answer, so a test can say "no failed fetch, never not ready"."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import httpx


@dataclass
class FetchLoad:
    """`workers` threads fetching `names` from `vault_id` in turn, one probing readiness."""

    broker_url: str
    probe_url: str
    token: str
    vault_id: str
    names: list[str]
    context: ssl.SSLContext
    workers: int = 4
    pause: float = 0.05
    fetches: int = 0
    probes: int = 0
    failures: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    served: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(name, value) -> times served: which versions the load saw."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FetchLoad:
        targets = [self._fetching] * self.workers + [self._probing]
        for index, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"fetch-load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _fetching(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(verify=self.context, timeout=30, headers=headers) as client:
            turn = 0
            while not self._stop.is_set():
                name = self.names[turn % len(self.names)]
                turn += 1
                body = {"vault_id": self.vault_id, "secrets": [{"name": name, "version": None}]}
                try:
                    answer = client.post(f"{self.broker_url}/v1/secrets", json=body)
                    ok = answer.status_code == 200
                    outcome = f"HTTP {answer.status_code} {answer.text[:300]}"
                except httpx.HTTPError as error:
                    ok, outcome = False, f"{type(error).__name__}: {error}"
                with self._lock:
                    self.fetches += 1
                    if ok:
                        self.served[(name, answer.json()["secrets"][0]["value"])] += 1
                    else:
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {name}: {outcome}")
                self._stop.wait(self.pause)

    def _probing(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get(f"{self.probe_url}/readyz")
                    problem = None if answer.status_code == 200 else answer.text[:300]
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with self._lock:
                    self.probes += 1
                    if problem is not None:
                        self.not_ready.append(f"{time.strftime('%H:%M:%S')} {problem}")
                self._stop.wait(0.5)
