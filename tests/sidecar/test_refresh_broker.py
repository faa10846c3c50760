"""The refresh loop in broker mode, round by round, against the broker double over real TLS.

Each test runs the init container's `run` first (the files as the pod starts), then drives
`Refresher.round()` by hand: no sleeping, and each round's answer is the broker double's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.sidecar_harness import (
    ALL_VALUES,
    API_V1,
    API_V2,
    BROKER_TOKEN,
    DB,
    BrokerDouble,
    assert_no_value,
    make_plan,
    secret_file,
    sets,
    snapshot,
    template_file,
)

from contract import FileSpec, Plan
from sidecar import __main__ as init
from sidecar import config, sources
from sidecar.refresh import Refresher, wait_after

API_V3 = "api-v3-Rq55zTx-Hidden"
INTERVAL = 60
START = datetime(2026, 12, 5, 4, 0, 0, tzinfo=UTC)


class WallTime:
    """Wall time that moves a second per reading: each record time is distinct and known."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _plan(directory: Path, *files: FileSpec) -> Plan:
    return make_plan(
        directory,
        *(
            files
            or (
                secret_file("api", "api"),
                secret_file("api-old", "api@1"),
                secret_file("user", "db#user"),
                template_file("conf", 'api={{ secret("api") }} user={{ secret("db#user") }}'),
            )
        ),
        mode="broker",
        refresh_interval=INTERVAL,
    )


def _started(broker_env: dict[str, str], plan: Plan, clock: WallTime | None = None) -> Refresher:
    """The init container's files, then a refresher over them (nothing fetched yet)."""
    env = {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json()}
    init.run(env)
    settings = config.load(env)
    return Refresher(
        plan, sources.of(settings, deadline=5.0), now=clock or WallTime(), draw=lambda: 0.5
    )


def _record(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / ".sakura-secrets.json").read_text())
    return data


def _data(directory: Path) -> str:
    return os.readlink(directory / "..data")


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The refresh container's own lines, whole (not httpx's)."""
    return [r.getMessage() for r in caplog.records if r.name == "sidecar.refresh"]


def _bodies(broker: BrokerDouble) -> list[dict[str, Any]]:
    return [json.loads(request["body"]) for request in broker.requests]


def test_unchanged_rounds_never_switch_and_ask_only_the_latest_with_the_versions_held(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    plan = _plan(secrets_dir)
    refresher = _started(broker_env, plan)
    loaded = _data(secrets_dir)
    before = snapshot(secrets_dir)
    init_record = _record(secrets_dir)

    waits = [refresher.round() for _ in range(3)]

    assert waits == [INTERVAL] * 3
    assert _data(secrets_dir) == loaded, "the init container's set is current: no switch"
    assert sets(secrets_dir) == [loaded]
    files = snapshot(secrets_dir)
    assert {n: v for n, v in files.items() if n != ".sakura-secrets.json"} == {
        n: v for n, v in before.items() if n != ".sakura-secrets.json"
    }
    bodies = _bodies(broker)
    full = {"name": "api", "version": 1}
    assert full in bodies[0]["secrets"] and "held" not in bodies[0], "init: one full fetch"
    assert full in bodies[1]["secrets"] and "held" not in bodies[1], "refresh: one full fetch"
    for body in bodies[2:]:
        assert body == {
            "vault_id": plan.vault_id,
            "secrets": [{"name": "api", "version": None}, {"name": "db", "version": None}],
            "held": {"api": 2, "db": 1},
        }, "pinned api@1 is never asked again"
    assert len(bodies) == 4
    record = _record(secrets_dir)
    assert record["set"] == loaded and record["loaded_at"] == init_record["loaded_at"]
    assert record["last_success"] == "2026-12-05T04:00:03+00:00", "a clock reading per round"
    assert (record["last_error"], record["consecutive_failures"]) == (None, 0)
    assert record["refresh_interval"] == INTERVAL


def test_a_new_version_switches_every_file_once(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    first = _data(secrets_dir)
    broker.values["api"].append(API_V3)

    refresher.round()

    second = _data(secrets_dir)
    assert second != first and sets(secrets_dir) == [second], "one switch, the old set gone"
    files = snapshot(secrets_dir)
    assert files["api"] == (API_V3.encode(), 0o400)
    assert files["conf"] == (f"api={API_V3} user={DB['user']}".encode(), 0o400)
    assert files["api-old"] == (API_V1.encode(), 0o400), "the pinned version stays"
    assert files["user"] == (DB["user"].encode(), 0o400)
    record = _record(secrets_dir)
    assert record["set"] == second
    assert [(s["name"], s["requested_version"], s["version"]) for s in record["secrets"]] == [
        ("api", None, 3),
        ("api", 1, 1),
        ("db", None, 1),
    ]
    assert _messages(caplog) == [
        "refreshing every 60s; the files are current (api@2, api@1, db@1)",
        "switched the files to a new set: api@3 (was 2)",
    ]
    assert record["loaded_at"] == "2026-12-05T04:00:02+00:00", "when the switch was made"

    refresher.round()
    assert _data(secrets_dir) == second, "version 3 is held now: no second switch"
    assert _bodies(broker)[-1]["held"] == {"api": 3, "db": 1}


def test_a_broker_that_answers_held_versions_with_their_values_does_not_switch(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    """Before change-only reads the broker answered every item with its value: the same
    version is unchanged all the same."""
    broker.unchanged = False
    refresher = _started(broker_env, _plan(secrets_dir))
    loaded = _data(secrets_dir)
    for _ in range(3):
        refresher.round()
    assert _data(secrets_dir) == loaded
    broker.values["db"].append(json.dumps({"user": "user-v2-Hidden"}))
    refresher.round()
    assert _data(secrets_dir) != loaded
    assert (secrets_dir / "user").read_text() == "user-v2-Hidden"


def test_an_older_version_from_a_lagging_broker_is_not_taken(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    broker.unchanged = False
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    loaded = _data(secrets_dir)
    broker.values["api"].pop()  # another replica whose cache still has version 1 as latest
    refresher.round()
    assert _data(secrets_dir) == loaded
    assert (secrets_dir / "api").read_text() == API_V2


def test_a_first_fetch_of_other_versions_than_the_records_switches(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    loaded = _data(secrets_dir)
    broker.values["api"].append(API_V3)  # written between the init container and the refresh
    refresher.round()
    assert _data(secrets_dir) != loaded
    assert (secrets_dir / "api").read_text() == API_V3


def test_without_a_record_of_the_current_set_the_first_fetch_switches(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    """The record is what proves the files are these versions; without it they are written."""
    plan = _plan(secrets_dir)
    env = {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json()}
    init.run(env)
    loaded = _data(secrets_dir)
    (secrets_dir / ".sakura-secrets.json").unlink()
    refresher = Refresher(plan, sources.of(config.load(env), deadline=5.0), draw=lambda: 0.5)
    refresher.round()
    assert _data(secrets_dir) != loaded
    assert _record(secrets_dir)["set"] == _data(secrets_dir)


def test_a_revoked_grant_keeps_the_files_and_the_record_and_log_say_why(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    loaded, before = _data(secrets_dir), snapshot(secrets_dir)
    broker.grants.discard("api")
    broker.values["api"].append(API_V3)

    wait = refresher.round()

    assert wait == 2.0, "the first retry comes after the backoff's start, not the interval"
    assert _data(secrets_dir) == loaded
    after = snapshot(secrets_dir)
    assert {n: v for n, v in after.items() if not n.startswith(".")} == {
        n: v for n, v in before.items() if not n.startswith(".")
    }
    record = _record(secrets_dir)
    assert record["last_error"].startswith(
        'forbidden: serviceaccount shop/api may not get sakura-secrets.io secrets "api"'
    )
    assert record["last_error_at"] == "2026-12-05T04:00:02+00:00"
    assert record["consecutive_failures"] == 1
    assert record["last_success"] == "2026-12-05T04:00:01+00:00"
    assert record["set"] == loaded
    assert _messages(caplog)[-1] == (
        "refresh failed (1 in a row), the files stay as they are; next attempt in 2.0s: "
        'forbidden: serviceaccount shop/api may not get sakura-secrets.io secrets "api"; grant '
        "it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource secrets, "
        "resourceName api)"
    )

    broker.grants.add("api")
    assert refresher.round() == INTERVAL
    assert (secrets_dir / "api").read_text() == API_V3
    record = _record(secrets_dir)
    assert record["consecutive_failures"] == 0
    assert (record["last_error"], record["last_error_at"]) == (None, None), "healthy again"
    assert record["last_success"] == "2026-12-05T04:00:04+00:00"
    assert _messages(caplog)[-2:] == [
        "switched the files to a new set: api@3 (was 2)",
        "refreshed again after 1 failed attempt(s)",
    ]


def test_failures_back_off_doubling_up_to_the_interval(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    broker.grants.clear()
    waits = [refresher.round() for _ in range(8)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert _record(secrets_dir)["consecutive_failures"] == 8


def test_a_first_fetch_that_fails_keeps_the_init_containers_files(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    before = snapshot(secrets_dir)
    init_record = _record(secrets_dir)
    broker.script.append((503, {"error": "Sakura is down"}, {"Retry-After": "60"}))
    assert refresher.round() == 2.0
    record = _record(secrets_dir)
    assert record["secrets"] == init_record["secrets"] and record["set"] == init_record["set"]
    assert record["last_error"].startswith("throttled: Sakura is down (HTTP 503)")
    assert record["last_success"] is None, "no refresh has succeeded yet"
    assert {n: v for n, v in snapshot(secrets_dir).items() if not n.startswith(".")} == {
        n: v for n, v in before.items() if not n.startswith(".")
    }


def test_a_new_value_the_template_cannot_use_keeps_the_files(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    loaded, before = _data(secrets_dir), snapshot(secrets_dir)
    broker.values["db"].append("no-longer-json-Hidden")

    assert refresher.round() == 2.0

    assert _data(secrets_dir) == loaded
    assert {n: v for n, v in snapshot(secrets_dir).items() if not n.startswith(".")} == {
        n: v for n, v in before.items() if not n.startswith(".")
    }
    error = _record(secrets_dir)["last_error"]
    assert error.startswith("bad key: secret 'db#user': key 'user' was asked for")
    assert "no-longer-json-Hidden" not in error + caplog.text
    assert [s["version"] for s in _record(secrets_dir)["secrets"]] == [2, 1, 1]


def test_the_token_file_is_read_again_for_each_round(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path, token_file: Path
) -> None:
    """The kubelet rotates the projected token: each request carries the file's token now."""
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    token_file.write_text("rotated-token-2\n")
    broker.token = "rotated-token-2"
    assert refresher.round() == INTERVAL
    token_file.write_text("rotated-token-3\n")
    broker.token = "rotated-token-3"
    assert refresher.round() == INTERVAL
    assert [r["authorization"] for r in broker.requests] == [
        f"Bearer {BROKER_TOKEN}",
        f"Bearer {BROKER_TOKEN}",
        "Bearer rotated-token-2",
        "Bearer rotated-token-3",
    ]
    assert _record(secrets_dir)["consecutive_failures"] == 0


class _Stop(Exception):
    """Ends `Refresher.run`, which otherwise loops for ever."""


def _three_waits(refresher: Refresher) -> list[float]:
    """Run the loop until it has waited three times; what it waited."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        refresher.run(sleep)
    return slept


def test_a_plan_of_pinned_versions_only_asks_nothing(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(broker_env, _plan(secrets_dir, secret_file("a", "api@1")))
    slept = _three_waits(refresher)
    assert slept == [INTERVAL] * 3
    assert len(broker.requests) == 1, "only the init container's fetch"
    assert _messages(caplog) == ["every secret is pinned to a version: nothing to refresh"]


def test_the_loop_waits_the_interval_with_jitter_between_rounds(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    draws = iter([0.0, 0.999, 0.5])
    refresher._draw = lambda: next(draws)
    slept = _three_waits(refresher)
    assert slept == pytest.approx([54.0, 65.988, 60.0])
    assert len(broker.requests) == 4


def test_wait_after_is_the_interval_or_the_capped_backoff_with_jitter() -> None:
    assert wait_after(600, 0, 0.5) == 600
    assert wait_after(600, 0, 0.0) == 540
    assert wait_after(600, 0, 1.0) == pytest.approx(660)
    assert [wait_after(20, n, 0.5) for n in range(1, 6)] == [2, 4, 8, 16, 20]
    assert wait_after(20, 3, 0.0) == pytest.approx(7.2)
    assert wait_after(86400, 10_000, 0.5) == 86400, "no overflow after many failures"


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    import sys

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_thread_switches")
def test_a_reader_never_sees_a_mix_of_versions_while_refreshes_switch(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    """An app reading a template and the plain file of the same secret in a loop, resolving
    the set once per read, while every round brings a new version."""
    plan = _plan(
        secrets_dir,
        secret_file("api", "api"),
        template_file("conf", '{{ secret("api") }}'),
        secret_file("user", "db#user"),
    )
    refresher = _started(broker_env, plan)
    refresher.round()
    seen: list[tuple[bytes, bytes]] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            where = os.path.dirname(os.path.realpath(secrets_dir / "api"))
            try:
                seen.append((Path(where, "api").read_bytes(), Path(where, "conf").read_bytes()))
            except FileNotFoundError:
                continue  # the set was replaced and removed meanwhile: read again

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for generation in range(150):
            broker.values["api"].append(f"api-generation-{generation}")
            assert refresher.round() == INTERVAL
    finally:
        done.set()
        reader.join()
    assert [pair for pair in seen if pair[0] != pair[1]] == []
    assert len({pair[0] for pair in seen}) > 10, "the reader must have read across many sets"
    assert (secrets_dir / "api").read_text() == "api-generation-149"
    assert len(sets(secrets_dir)) == 1


def test_no_value_reaches_the_log_or_the_record(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a start, a switch, failures of every kind and a broker line that quotes a value
    (redacted as the termination message is)."""
    caplog.set_level(logging.DEBUG)
    refresher = _started(broker_env, _plan(secrets_dir))
    records: list[str] = []

    def round_and_keep() -> None:
        refresher.round()
        records.append((secrets_dir / ".sakura-secrets.json").read_text())

    round_and_keep()
    broker.values["api"].append(API_V3)
    round_and_keep()
    broker.script.append((403, {"error": f"no: {API_V3} and {API_V1} and {DB['pass']}"}, {}))
    round_and_keep()
    assert "no: <redacted> and <redacted> and <redacted>" in records[-1], "held values hidden"
    broker.values["db"].append("not-json-either-Hidden")
    round_and_keep()
    broker.values["db"].append(json.dumps({"user": "fine-again-Hidden"}))
    round_and_keep()
    assert (secrets_dir / "user").read_text() == "fine-again-Hidden"
    extra = (API_V3, "not-json-either-Hidden", "fine-again-Hidden")
    for text in (caplog.text, *records):
        assert_no_value(text)
        for value in extra:
            assert value not in text
    assert BROKER_TOKEN not in caplog.text + "".join(records)
    assert set(ALL_VALUES) >= {API_V1, API_V2}


def test_two_versions_changed_at_once_are_one_switch_and_one_line(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    broker.values["api"].append(API_V3)
    broker.values["db"].append(json.dumps({"user": "user-v2-Hidden"}))
    refresher.round()
    assert _messages(caplog)[-1] == "switched the files to a new set: api@3 (was 2), db@2 (was 1)"
    assert (secrets_dir / "conf").read_text() == f"api={API_V3} user=user-v2-Hidden"


def test_without_a_record_the_start_switches_and_says_so(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.described = None
    refresher.round()
    assert _messages(caplog) == [
        "switched the files to a new set: api@2, api@1, db@1",
        "refreshing every 60s",
    ]


def test_without_a_record_a_failed_start_records_the_set_and_no_versions(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    plan = _plan(secrets_dir)
    env = {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json()}
    init.run(env)
    (secrets_dir / ".sakura-secrets.json").unlink()
    refresher = Refresher(plan, sources.of(config.load(env), deadline=5.0), draw=lambda: 0.5)
    broker.grants.clear()
    assert refresher.round() == 2.0
    record = _record(secrets_dir)
    assert record["set"] == _data(secrets_dir) and record["secrets"] == []
    assert record["refresh_interval"] == INTERVAL and record["consecutive_failures"] == 1


def test_a_record_that_cannot_be_written_is_logged_and_the_refresh_goes_on(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresher = _started(broker_env, _plan(secrets_dir))
    (secrets_dir / ".sakura-secrets.json").unlink()
    (secrets_dir / ".sakura-secrets.json").mkdir()  # something in the way of the rename
    (secrets_dir / ".sakura-secrets.json" / "x").write_text("")
    broker.values["api"].append(API_V3)
    assert refresher.round() == INTERVAL
    assert (secrets_dir / "api").read_text() == API_V3
    assert _messages(caplog) == [
        f"cannot update .sakura-secrets.json: write failed: cannot write into "
        f"{str(secrets_dir)!r}: Is a directory (...sakura-secrets.json.tmp); the secrets "
        "volume may be full (raise its sizeLimit) or not writable by this user"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_switch_gives_the_files_and_the_record_the_plans_owner(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    plan = make_plan(
        secrets_dir,
        secret_file("api", "api"),
        mode="broker",
        refresh_interval=INTERVAL,
        uid=1234,
        gid=2345,
    )
    refresher = _started(broker_env, plan)
    refresher.round()
    broker.values["api"].append(API_V3)
    refresher.round()
    for name in ("api", ".sakura-secrets.json", _data(secrets_dir)):
        info = (secrets_dir / name).stat()
        assert (info.st_uid, info.st_gid) == (1234, 2345), name


def test_a_new_value_quoted_by_a_failure_after_the_fetch_is_redacted(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No message quotes a value by design; as for the init container, fetched values are cut
    out of the line anyway. A real render cannot be made to quote one: a stand-in does."""
    from sidecar import refresh
    from sidecar.errors import TemplateFailed

    refresher = _started(broker_env, _plan(secrets_dir))
    refresher.round()
    broker.values["api"].append(API_V3)

    def quoting(plan: Plan, values: Any) -> Any:
        raise TemplateFailed(f"it quotes {API_V3} and {API_V2}")

    monkeypatch.setattr(refresh.writer, "contents", quoting)
    refresher.round()
    assert _record(secrets_dir)["last_error"] == (
        "template error: it quotes <redacted> and <redacted>"
    )


def test_record_times_are_utc() -> None:
    from sidecar import refresh

    assert refresh._now().utcoffset() == timedelta(0)
