"""Which Events are written and when (`injector.events.EventBook`), on the hand clock, and the
recorder's shell around it: a queue that never blocks, writes on the book's word, and an API
that refuses (logged once)."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from support.clock import HandClock
from support.event_fakes import RecordingEventsApi, forbidden

from injector.event_recorder import EventRecorder, EventsLost, micro_time
from injector.events import (
    MAX_NOTE_BYTES,
    Create,
    EventBook,
    Occurrence,
    Patch,
    Regarding,
    clip_note,
)

POD = Regarding("Pod", "shop", "api-7d9", uid="u-1")
RS = Regarding("ReplicaSet", "shop", "web-6d4cf56db6", "apps/v1", "u-2")


def refused(regarding: Regarding = POD, note: str = "access-denied: no grant") -> Occurrence:
    return Occurrence(regarding, "SecretsRefused", note, "Fetch")


def test_the_first_occurrence_is_created_at_once_and_the_repeats_are_one_series() -> None:
    book = EventBook(interval=30, window=600)
    assert book.observe(refused(), 1000.0)
    [create] = book.due(1000.0)
    assert isinstance(create, Create)
    assert (create.occurrence, create.first, create.count) == (refused(), 1000.0, 1)
    assert create.name.startswith("api-7d9.") and len(create.name) == len("api-7d9.") + 16
    for second in (1005.0, 1010.0, 1020.0):
        book.observe(refused(), second)
        assert book.due(second) == []  # within the interval of the create
    assert book.due(1030.0) == [Patch(create.name, "shop", 4, 1020.0)]
    assert book.due(1070.0) == []  # nothing new since
    book.observe(refused(), 1071.0)
    assert book.due(1071.0) == [Patch(create.name, "shop", 5, 1071.0)]


def test_occurrences_before_the_first_write_create_the_event_with_its_series() -> None:
    book = EventBook()
    for second in (1000.0, 1000.2, 1000.7):
        book.observe(refused(), second)
    [create] = book.due(1001.0)
    assert isinstance(create, Create)
    assert (create.first, create.count, create.last) == (1000.0, 3, 1000.7)


def test_another_object_reason_or_note_is_another_event() -> None:
    book = EventBook()
    book.observe(refused(), 1000.0)
    book.observe(refused(RS), 1000.0)
    book.observe(refused(note="secret-absent: no db"), 1000.0)
    book.observe(Occurrence(POD, "SecretsDenied", "access-denied: no grant", "Admit"), 1000.0)
    writes = book.due(1000.0)
    assert [type(w) for w in writes] == [Create] * 4
    assert len({w.name for w in writes}) == 4


def test_after_the_window_the_same_occurrence_is_a_new_event() -> None:
    book = EventBook(window=600)
    book.observe(refused(), 1000.0)
    [first] = book.due(1000.0)
    book.observe(refused(), 1600.0)  # exactly the window: still the same Event
    assert book.due(1600.0) == [Patch(first.name, "shop", 2, 1600.0)]
    book.observe(refused(), 2200.5)
    [again] = book.due(2200.5)
    assert isinstance(again, Create) and again.name != first.name and again.count == 1
    assert len(book) == 1


def test_writes_stay_under_the_global_rate_and_the_rest_wait_their_turn() -> None:
    book = EventBook(rate=2.0, burst=3)
    pods = [Regarding("Pod", "shop", f"p{i}") for i in range(10)]
    for regarding in pods:
        book.observe(refused(regarding), 1000.0)
    assert [w.occurrence.regarding.name for w in book.due(1000.0)] == ["p0", "p1", "p2"]  # type: ignore[union-attr]
    assert book.due(1000.4) == []  # 0.8 of a token
    assert [w.occurrence.regarding.name for w in book.due(1000.5)] == ["p3"]  # type: ignore[union-attr]
    assert len(book.due(1002.5)) == 3  # 4 tokens earned, the burst caps them at 3
    assert book.pending()
    assert len(book.due(1100.0)) == 3
    assert not book.pending()


def test_a_full_book_drops_new_events_and_counts_them_until_old_ones_expire() -> None:
    book = EventBook(max_entries=2, window=600)
    assert book.observe(refused(Regarding("Pod", "shop", "a")), 1000.0)
    assert book.observe(refused(Regarding("Pod", "shop", "b")), 1000.0)
    assert not book.observe(refused(Regarding("Pod", "shop", "c")), 1001.0)
    assert book.dropped == 1
    assert book.observe(refused(Regarding("Pod", "shop", "a")), 1001.0)  # known: counted
    book.due(1001.0)
    assert book.observe(refused(Regarding("Pod", "shop", "c")), 1601.0)  # b: 601 s ago
    assert not book.observe(refused(Regarding("Pod", "shop", "d")), 1601.0)  # a: 600 s ago
    assert book.observe(refused(Regarding("Pod", "shop", "d")), 1601.5)  # a expired
    assert (book.dropped, len(book)) == (2, 2)


def test_an_event_with_writes_pending_is_never_expired() -> None:
    book = EventBook(max_entries=1, rate=1.0, burst=1)
    book.observe(refused(Regarding("Pod", "shop", "a")), 1000.0)
    assert not book.observe(refused(Regarding("Pod", "shop", "b")), 5000.0)  # a not written


def test_a_failed_create_is_tried_again_after_the_interval() -> None:
    book = EventBook(interval=30)
    book.observe(refused(), 1000.0)
    [create] = book.due(1000.0)
    book.failed(create)
    assert book.due(1010.0) == []
    assert book.due(1030.0) == [Create(create.name, refused(), 1000.0, 1, 1000.0)]


def test_a_patch_of_an_event_gone_from_the_api_server_creates_a_new_one() -> None:
    book = EventBook(interval=30)
    book.observe(refused(), 1000.0)
    [create] = book.due(1000.0)
    book.observe(refused(), 1040.0)
    [patch] = book.due(1040.0)
    book.failed(patch)  # another failure: the next occurrence's patch carries the count
    assert book.due(1080.0) == []
    book.failed(patch, gone=True)
    [again] = book.due(1080.0)
    assert isinstance(again, Create) and again.name != create.name and again.count == 2


def test_long_notes_are_clipped_within_the_api_servers_limit() -> None:
    note = "é" * MAX_NOTE_BYTES
    clipped = clip_note(note)
    assert clipped.endswith("...") and len(clipped.encode()) <= MAX_NOTE_BYTES
    assert clip_note("short") == "short"
    assert clip_note("x" * MAX_NOTE_BYTES) == "x" * MAX_NOTE_BYTES  # at the limit: as it is
    assert clip_note("x" * (MAX_NOTE_BYTES + 1)) == "x" * (MAX_NOTE_BYTES - 3) + "..."
    assert Occurrence(POD, "R", note, "A").note == clipped


@pytest.mark.parametrize(
    ("name", "base"),
    [("web-6d4cf56db6-", "web-6d4cf56db6"), ("a.b-.", "a.b"), ("x" * 253, "x" * 200), ("", "pod")],
)
def test_an_event_name_is_a_valid_name_even_from_a_generate_name(name: str, base: str) -> None:
    book = EventBook()
    book.observe(refused(Regarding("Pod", "shop", name)), 1000.0)
    [create] = book.due(1000.0)
    assert re.fullmatch(re.escape(base) + r"\.[0-9a-f]{16}", create.name), create.name


def test_an_event_made_anew_at_the_same_moment_gets_another_name() -> None:
    book = EventBook()
    book.observe(refused(), 1000.0)
    [create] = book.due(1000.0)
    book.failed(create, gone=True)
    [again] = book.due(1000.0 + book.interval)
    assert isinstance(again, Create) and again.name != create.name
    assert re.fullmatch(r"api-7d9\.[0-9a-f]{16}", again.name)


def test_a_written_event_does_not_hold_up_the_pending_ones_after_it() -> None:
    book = EventBook()
    book.observe(refused(Regarding("Pod", "shop", "a")), 1000.0)
    book.due(1000.0)
    book.observe(refused(Regarding("Pod", "shop", "b")), 1001.0)
    assert [w.occurrence.regarding.name for w in book.due(1001.0)] == ["b"]  # type: ignore[union-attr]
    book.observe(refused(Regarding("Pod", "shop", "a")), 1002.0)  # waits for its interval
    book.observe(refused(Regarding("Pod", "shop", "c")), 1002.0)
    assert [w.occurrence.regarding.name for w in book.due(1002.0)] == ["c"]  # type: ignore[union-attr]


def test_a_stale_event_is_replaced_even_in_a_full_book_and_goes_last_in_line() -> None:
    full = EventBook(max_entries=1)
    full.observe(refused(), 1000.0)
    assert full.observe(refused(), 1601.0)  # never written, but stale: a new one replaces it
    assert full.dropped == 0
    book = EventBook(rate=1.0, burst=1)
    a, b = refused(Regarding("Pod", "shop", "a")), refused(Regarding("Pod", "shop", "b"))
    book.observe(a, 1000.0)
    book.due(1000.0)
    book.observe(b, 1001.0)
    book.due(1001.0)
    book.observe(b, 1700.0)
    book.observe(a, 1700.0)
    [first] = book.due(1700.0)  # one token: the older of the two new Events
    assert isinstance(first, Create) and first.occurrence == b


# ------------------------------------------------ the recorder (the shell)


async def test_the_recorder_writes_what_the_book_says_with_the_api_servers_fields() -> None:
    api, clock = RecordingEventsApi(), HandClock(1_767_000_000.0)
    recorder = EventRecorder(api, instance="injector-0", clock=clock, tick=3600)
    recorder.record(refused())
    recorder.record(refused())
    await recorder.flush()
    [body] = api.created
    assert body["series"] == {"count": 2, "lastObservedTime": micro_time(clock.now)}
    assert body["eventTime"] == datetime(2025, 12, 29, 9, 20, 0, 1, tzinfo=UTC)
    assert body["apiVersion"] == "events.k8s.io/v1" and body["kind"] == "Event"
    clock.now += 30
    recorder.record(refused())
    await recorder.flush()
    [(namespace, name, patch)] = api.patched
    assert (namespace, name) == ("shop", body["metadata"]["name"])
    assert patch == {"series": {"count": 3, "lastObservedTime": micro_time(clock.now)}}
    await recorder.aclose()


async def test_a_full_queue_drops_at_once_and_counts() -> None:
    recorder = EventRecorder(RecordingEventsApi(), queue_size=2, tick=3600)
    for _ in range(5):
        recorder.record(refused())
    assert recorder.dropped == 3
    await recorder.aclose()


async def test_the_background_turn_writes_a_tick_after_the_first_occurrence() -> None:
    api, clock = RecordingEventsApi(), HandClock()
    recorder = EventRecorder(api, clock=clock, sleep=clock.sleep, tick=1.0)
    recorder.record(refused())
    assert api.created == []
    for _ in range(1000):  # let the task take its turn (its write runs in a thread)
        if api.created:
            break
        await asyncio.sleep(0.01)
    assert len(api.created) == 1 and clock.waits == [1.0]
    await recorder.aclose()


async def test_refused_writes_are_logged_once_and_the_recorder_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, clock = RecordingEventsApi(), HandClock()
    api.fail = forbidden()
    recorder = EventRecorder(api, clock=clock, tick=3600)
    caplog.set_level(logging.INFO, logger="injector.event_recorder")
    for second in range(3):
        recorder.record(refused(Regarding("Pod", "shop", f"p{second}")))
        await recorder.flush()
        clock.now += 60
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "HTTP 403 Forbidden" in caplog.text and "create and patch" in caplog.text
    api.fail = None
    clock.now += 60
    await recorder.flush()  # the failed creates, again
    assert len(api.created) == 3
    assert caplog.messages[-1] == "writing Kubernetes Events again"
    api.fail = ApiException(status=404, reason="Not Found")
    recorder.record(refused(Regarding("Pod", "shop", "p0")))
    clock.now += 60
    await recorder.flush()  # the patch finds the Event gone: a new one next turn, no warning
    assert api.patched == []
    api.fail = None
    clock.now += 60
    await recorder.flush()
    assert len(api.created) == 4 and len(caplog.records) == 2
    await recorder.aclose()


async def test_lost_events_are_counted_by_why_at_scrape() -> None:
    api, clock = RecordingEventsApi(), HandClock()
    recorder = EventRecorder(api, clock=clock, queue_size=1, tick=3600)
    registry = CollectorRegistry()
    registry.register(EventsLost(recorder))

    def lost(why: str) -> float | None:
        return registry.get_sample_value("sakura_secrets_events_lost_total", {"why": why})

    api.fail = forbidden()
    recorder.record(refused(Regarding("Pod", "shop", "p0")))
    recorder.record(refused(Regarding("Pod", "shop", "p1")))  # the queue holds one
    await recorder.flush()
    api.fail = ApiException(status=404, reason="Not Found")  # an expired Event: not a failure
    clock.now += 60
    await recorder.flush()
    recorder.book.dropped = 7
    assert (lost("queue_full"), lost("book_full"), lost("write_failed")) == (1, 7, 1)
    await recorder.aclose()
