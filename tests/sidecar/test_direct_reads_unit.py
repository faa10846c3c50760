"""Direct mode's reads on threads (sidecar/direct.py `_read_all`), with a scripted reader.

The emulator answers every read at once and in order, so it cannot make one read hang while
another fails, or two fail in the opposite order: the scripted reader does. The real reads
against the emulator are in test_sidecar_direct.py and test_sakura's test_sync_reader.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from contract import SecretVersion
from sakura import NotFound
from sakura.reader import SecretInfo, Unveiled
from sidecar import direct
from sidecar.errors import SecretNotFound, Unreachable

VAULT = "110000000001"
WANTED = tuple(SecretVersion(f"s{i}") for i in range(5))


class Scripted:
    """Each read runs `script[name]()` (a value, or raises); counts reads at once."""

    def __init__(self, script: dict[str, Callable[[], str]]) -> None:
        self.script = script
        self.at_once = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def unveil(self, vault_id: str, name: str, version: int | None = None) -> Unveiled:
        with self._lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            return Unveiled(name, 1, self.script[name]())
        finally:
            with self._lock:
                self.at_once -= 1

    def list_secrets(self, vault_id: str) -> list[SecretInfo]:
        raise AssertionError("not asked")

    def close(self) -> None:
        pass


def _missing(name: str, after: float = 0.0) -> Callable[[], str]:
    def read() -> str:
        time.sleep(after)
        raise NotFound(f"secret {name!r} not found in vault {VAULT}", kind="secret", name=name)

    return read


def _value(value: str) -> Callable[[], str]:
    return lambda: value


def test_every_value_comes_back_under_its_request_in_plan_order() -> None:
    reader = Scripted({s.name: _value(f"value-of-{s.name}") for s in WANTED})
    got = direct._read_all(reader, VAULT, WANTED, deadline=5.0)
    assert list(got) == list(WANTED)
    assert [item.value for item in got.values()] == [f"value-of-s{i}" for i in range(5)]


def test_reads_run_at_once_up_to_the_thread_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "MAX_THREADS", 3)
    gate = threading.Barrier(3, timeout=10)

    def read() -> str:
        gate.wait()  # three reads must be in flight together to pass
        return "v"

    wanted = tuple(SecretVersion(f"s{i}") for i in range(6))
    reader = Scripted({s.name: read for s in wanted})
    assert len(direct._read_all(reader, VAULT, wanted, deadline=5.0)) == 6
    assert reader.most_at_once == 3


def test_a_failure_ends_the_fetch_without_waiting_for_a_read_that_hangs() -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait(30)
        return "late"

    reader = Scripted({"s0": hang, "s1": _missing("s1"), **{f"s{i}": hang for i in (2, 3, 4)}})
    started = time.monotonic()
    try:
        with pytest.raises(SecretNotFound) as err:
            direct._read_all(reader, VAULT, WANTED, deadline=5.0)
    finally:
        release.set()
    assert time.monotonic() - started < 10  # not the 30 s of the hanging reads
    assert str(err.value).startswith("secret 's1' not found in vault 110000000001; check the name")


def test_no_answer_by_the_deadline_and_its_grace_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(direct, "GRACE", 0.0)
    release = threading.Event()
    reader = Scripted({s.name: (lambda: str(release.wait(30))) for s in WANTED})
    try:
        with pytest.raises(Unreachable) as err:
            direct._read_all(reader, VAULT, WANTED, deadline=0.2)
    finally:
        release.set()
    assert str(err.value) == (
        "Sakura did not answer within 0.2s (SAKURA_SECRETS_DEADLINE) while reading "
        "s0, s1, s2, s3, s4 from vault 110000000001"
    )


def test_nothing_wanted_starts_no_thread() -> None:
    before = threading.active_count()
    assert direct._read_all(Scripted({}), VAULT, (), deadline=5.0) == {}
    assert threading.active_count() == before
