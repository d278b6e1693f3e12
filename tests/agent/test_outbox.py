"""The durable outbox, on real SQLite files."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
)

from sekimori.agent.outbox import Outbox, OutboxStats, PendingEvent
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import AgentLog, AgentStopped, Event, OutboxDropped

BIG = 1 << 30


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(outbox_path: Path) -> Iterator[Outbox]:
    box = Outbox(outbox_path, max_bytes=BIG)
    yield box
    box.close()


def _log(message: str) -> AgentLog:
    return AgentLog(level="info", source="test", message=message)


def _all(box: Outbox) -> list[Event]:
    return box.peek(0, max_events=1_000_000, max_bytes=BIG)


def _messages(events: list[Event]) -> list[str]:
    out = []
    for event in events:
        payload = decode_payload(event.kind, event.payload)
        assert isinstance(payload, AgentLog)
        out.append(payload.message)
    return out


# ---- appending ----------------------------------------------------------------------


def test_new_outbox_is_empty(outbox: Outbox) -> None:
    assert outbox.stats() == OutboxStats(events=0, bytes=0, dropped_total=0, last_seq=0)
    assert _all(outbox) == []


def test_append_returns_consecutive_seqs_from_one(outbox: Outbox) -> None:
    assert [outbox.append("agent.log", _log(str(i))) for i in range(3)] == [1, 2, 3]
    many = outbox.append_many(PendingEvent("agent.log", _log(f"m{i}")) for i in range(4))
    assert many == [4, 5, 6, 7]
    assert outbox.append("agent.stopped", AgentStopped(reason="x")) == 8
    assert outbox.append_many([]) == []
    assert outbox.stats().last_seq == 8
    assert outbox.stats().events == 8


def test_appended_event_is_stored_as_given(outbox: Outbox) -> None:
    seq = outbox.append("agent.log", _log("hello"), os_user="alice", time_us=123)
    raw = msgspec.msgpack.encode(AgentStopped(reason="pre-encoded"))
    seq2 = outbox.append("agent.stopped", raw)
    first, second = _all(outbox)
    assert (first.seq, first.time_us, first.kind, first.os_user) == (seq, 123, "agent.log", "alice")
    assert decode_payload(first.kind, first.payload) == _log("hello")
    assert second.seq == seq2
    assert second.os_user is None
    assert bytes(second.payload) == raw
    assert second.time_us > 1_600_000_000_000_000  # stamped now, in microseconds


def test_append_many_stamps_one_time_unless_given(outbox: Outbox) -> None:
    outbox.append_many(
        [
            PendingEvent("agent.log", _log("a")),
            PendingEvent("agent.log", _log("b"), time_us=5),
            PendingEvent("agent.log", _log("c")),
        ]
    )
    a, b, c = _all(outbox)
    assert b.time_us == 5
    assert a.time_us == c.time_us != 5


def test_stats_bytes_grow_with_payloads(outbox: Outbox) -> None:
    outbox.append("agent.log", _log("x"))
    one = outbox.stats().bytes
    outbox.append("agent.log", _log("x" * 1000))
    two = outbox.stats().bytes
    assert one > 0
    assert two - one > 1000


def test_on_append_listener_is_called_after_each_append(outbox: Outbox) -> None:
    seen: list[int] = []
    outbox.on_append(lambda: seen.append(outbox.stats().events))
    outbox.append("agent.log", _log("a"))
    outbox.append_many([PendingEvent("agent.log", _log("b"))] * 3)
    # Called after the commit, so the listener sees the new events; once per call.
    assert seen == [1, 4]
    outbox.append_many([])
    assert seen == [1, 4]


# ---- peeking ------------------------------------------------------------------------


def test_peek_respects_after_seq_and_max_events(outbox: Outbox) -> None:
    outbox.append_many(PendingEvent("agent.log", _log(str(i))) for i in range(10))
    assert [e.seq for e in outbox.peek(0, max_events=3, max_bytes=BIG)] == [1, 2, 3]
    assert [e.seq for e in outbox.peek(3, max_events=3, max_bytes=BIG)] == [4, 5, 6]
    assert [e.seq for e in outbox.peek(8, max_events=100, max_bytes=BIG)] == [9, 10]
    assert outbox.peek(10, max_events=100, max_bytes=BIG) == []
    # Peeking does not consume.
    assert len(_all(outbox)) == 10
    assert _messages(_all(outbox)) == [str(i) for i in range(10)]


def test_peek_respects_max_bytes_but_always_returns_one(outbox: Outbox) -> None:
    big = _log("x" * 1000)
    outbox.append_many(PendingEvent("agent.log", big) for _ in range(5))
    size = len(msgspec.msgpack.encode(big))
    # Always at least one event, even if it alone is over the budget.
    assert [e.seq for e in outbox.peek(0, max_events=10, max_bytes=1)] == [1]
    two = outbox.peek(0, max_events=10, max_bytes=2 * size + 100)
    assert [e.seq for e in two] == [1, 2]
    assert sum(len(bytes(e.payload)) for e in two) <= 2 * size + 100


# ---- acknowledging ------------------------------------------------------------------


def test_ack_through_deletes_and_counts(outbox: Outbox) -> None:
    outbox.append_many(PendingEvent("agent.log", _log(str(i))) for i in range(5))
    full = outbox.stats().bytes
    assert outbox.ack_through(2) == 2
    assert [e.seq for e in _all(outbox)] == [3, 4, 5]
    assert outbox.stats().events == 3
    assert outbox.stats().bytes < full
    assert outbox.ack_through(2) == 0  # already gone
    assert outbox.ack_through(0) == 0
    assert outbox.ack_through(100) == 3
    assert outbox.stats() == OutboxStats(events=0, bytes=0, dropped_total=0, last_seq=5)


def test_seqs_are_never_reused_after_deletion(outbox: Outbox) -> None:
    outbox.append_many(PendingEvent("agent.log", _log(str(i))) for i in range(3))
    assert outbox.ack_through(3) == 3
    assert outbox.append("agent.log", _log("after")) == 4


# ---- persistence --------------------------------------------------------------------


def test_everything_survives_close_and_reopen(outbox_path: Path) -> None:
    box = Outbox(outbox_path, max_bytes=BIG)
    box.append_many(PendingEvent("agent.log", _log(str(i)), os_user="bob") for i in range(6))
    box.ack_through(4)
    before = box.stats()
    events = _all(box)
    box.close()

    reopened = Outbox(outbox_path, max_bytes=BIG)
    try:
        assert reopened.stats() == before
        assert [
            (e.seq, e.time_us, e.kind, e.os_user, bytes(e.payload)) for e in _all(reopened)
        ] == [(e.seq, e.time_us, e.kind, e.os_user, bytes(e.payload)) for e in events]
        # AUTOINCREMENT: numbering continues after the highest ever used, even though
        # everything up to here is acknowledged and deleted.
        reopened.ack_through(6)
        assert reopened.append("agent.log", _log("next")) == 7
    finally:
        reopened.close()

    again = Outbox(outbox_path, max_bytes=BIG)
    try:
        assert again.append("agent.log", _log("next")) == 8
    finally:
        again.close()


def test_appends_are_committed_for_other_connections(outbox: Outbox, outbox_path: Path) -> None:
    outbox.append("agent.log", _log("durable"))
    # Another connection (as after a crash) sees the committed row.
    with sqlite3.connect(outbox_path) as other:
        assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    other.close()


# ---- the bound ----------------------------------------------------------------------


def _fill(box: Outbox, count: int, size: int = 200) -> list[int]:
    return [box.append("agent.log", _log(f"{i:06d}" + "x" * size)) for i in range(count)]


def _drop_records(events: list[Event]) -> list[OutboxDropped]:
    out = []
    for event in events:
        if event.kind == "agent.outbox_dropped":
            payload = decode_payload(event.kind, event.payload)
            assert isinstance(payload, OutboxDropped)
            out.append(payload)
    return out


def test_under_the_bound_nothing_is_dropped(outbox_path: Path) -> None:
    box = Outbox(outbox_path, max_bytes=100_000)
    try:
        _fill(box, 50)
        assert box.stats().bytes <= 100_000
        assert box.stats().dropped_total == 0
        assert _drop_records(_all(box)) == []
    finally:
        box.close()


def test_past_the_bound_the_oldest_are_dropped_and_recorded(outbox_path: Path) -> None:
    bound = 10_000
    box = Outbox(outbox_path, max_bytes=bound)
    try:
        seqs: list[int] = []
        while box.stats().dropped_total == 0:
            seqs += _fill(box, 1)
            assert len(seqs) < 1000, "never dropped"
        stats = box.stats()
        events = _all(box)
        (record,) = _drop_records(events)
        # The oldest events went, in one contiguous range starting at the first.
        assert record.first_seq == seqs[0] == 1
        assert record.count == stats.dropped_total
        assert record.last_seq == record.first_seq + record.count - 1
        assert record.bytes > 0
        kept = [e.seq for e in events if e.kind == "agent.log"]
        assert kept == [s for s in seqs if s > record.last_seq]
        assert kept[-1] == seqs[-1]  # the event that overflowed is kept
        # The record is one new event with its own seq, after the one that overflowed.
        (marker,) = [e for e in events if e.kind == "agent.outbox_dropped"]
        assert marker.seq == seqs[-1] + 1 == stats.last_seq
        assert stats.events == len(kept) + 1
        assert stats.bytes <= bound
    finally:
        box.close()


def test_bytes_stay_under_the_bound_under_a_flood(outbox_path: Path) -> None:
    bound = 20_000
    box = Outbox(outbox_path, max_bytes=bound)
    try:
        for _ in range(30):
            box.append_many(PendingEvent("agent.log", _log("y" * 150)) for _ in range(20))
            assert box.stats().bytes <= bound
        stats = box.stats()
        events = _all(box)
        records = _drop_records(events)
        assert len(records) >= 2
        # Older drop records may themselves have been dropped since.
        assert sum(r.count for r in records) <= stats.dropped_total
        assert stats.events == len(events)
        # Drops always take the oldest: what is left is one unbroken run up to the
        # newest seq, and every dropped range lies before it without overlapping.
        stored = [e.seq for e in events]
        assert stored == list(range(stored[0], stats.last_seq + 1))
        ranges = sorted((r.first_seq, r.last_seq) for r in records)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
        assert ranges[-1][1] < stored[0]
    finally:
        box.close()


def test_dropped_total_survives_reopen(outbox_path: Path) -> None:
    box = Outbox(outbox_path, max_bytes=5_000)
    _fill(box, 60)
    before = box.stats()
    box.close()
    assert before.dropped_total > 0
    reopened = Outbox(outbox_path, max_bytes=5_000)
    try:
        assert reopened.stats() == before
        _fill(reopened, 60)
        assert reopened.stats().dropped_total > before.dropped_total
    finally:
        reopened.close()


def test_bytes_accounting_matches_a_fresh_count(outbox_path: Path) -> None:
    # The running byte count (kept in memory for speed) must equal what a reopen
    # computes from the table, after appends, drops and acks.
    box = Outbox(outbox_path, max_bytes=8_000)
    _fill(box, 80, size=90)
    box.ack_through(box.stats().last_seq - 5)
    _fill(box, 3)
    running = box.stats()
    box.close()
    fresh = Outbox(outbox_path, max_bytes=8_000)
    try:
        assert fresh.stats() == running
    finally:
        fresh.close()


@settings(max_examples=40, deadline=None)
@given(
    bound=st.integers(2_000, 30_000),
    appends=st.lists(
        st.lists(st.integers(0, 400), min_size=1, max_size=8), min_size=1, max_size=40
    ),
)
def test_any_append_pattern_stays_under_the_bound(bound: int, appends: list[list[int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.db"
        box = Outbox(path, max_bytes=bound)
        try:
            for sizes in appends:
                before = box.stats()
                seqs = box.append_many(PendingEvent("agent.log", _log("z" * n)) for n in sizes)
                assert seqs == list(range(before.last_seq + 1, before.last_seq + len(sizes) + 1))
                stats = box.stats()
                assert stats.bytes <= bound
                stored = [e.seq for e in _all(box)]
                assert stored == list(range(stored[0], stats.last_seq + 1))
                assert stats.events == len(stored)
                dropped_now = stats.dropped_total - before.dropped_total
                if dropped_now:
                    # Exactly one record for this append, naming what it dropped.
                    assert stats.last_seq == seqs[-1] + 1
                    newest = _all(box)[-1]
                    (record,) = _drop_records([newest])
                    assert record.count == dropped_now
                    assert record.last_seq - record.first_seq + 1 == dropped_now
                    assert record.last_seq < stored[0]
                else:
                    assert stats.last_seq == seqs[-1]
            running = box.stats()
        finally:
            box.close()
        reopened = Outbox(path, max_bytes=bound)
        try:
            assert reopened.stats() == running
        finally:
            reopened.close()


def test_reader_acking_while_writers_append(outbox: Outbox) -> None:
    writers, per_writer = 4, 100
    done = threading.Event()
    delivered: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(per_writer):
                outbox.append("agent.log", _log(str(i)))
        except BaseException as exc:  # noqa: BLE001 - reported below, from the test thread
            errors.append(exc)

    def read() -> None:
        # What the channel does: send what is after the last sent seq, then ack it.
        try:
            last = 0
            while True:
                finished = done.is_set()
                batch = outbox.peek(last, max_events=17, max_bytes=BIG)
                if batch:
                    delivered.extend(e.seq for e in batch)
                    last = batch[-1].seq
                    outbox.ack_through(last)
                elif finished:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below, from the test thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=write) for _ in range(writers)]
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    done.set()
    reader.join(timeout=30)
    assert errors == []
    assert delivered == list(range(1, writers * per_writer + 1))
    assert outbox.stats().events == 0
    assert outbox.stats().bytes == 0


# ---- concurrency --------------------------------------------------------------------


def test_concurrent_appends_get_unique_seqs_and_all_are_stored(outbox: Outbox) -> None:
    threads_n, per_thread = 8, 60
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            got = []
            for i in range(per_thread):
                if i % 3 == 0:
                    got += outbox.append_many(
                        [PendingEvent("agent.log", _log(f"{n}:{i}:{j}")) for j in range(2)]
                    )
                else:
                    got.append(outbox.append("agent.log", _log(f"{n}:{i}")))
            results[n] = got
        except BaseException as exc:  # noqa: BLE001 - reported below, from the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    all_seqs = [s for got in results.values() for s in got]
    expected = threads_n * (per_thread + per_thread // 3)
    assert len(all_seqs) == expected
    assert len(set(all_seqs)) == expected
    assert sorted(all_seqs) == list(range(1, expected + 1))
    for got in results.values():
        assert got == sorted(got)  # each thread's events in its own order
    stored = _all(outbox)
    assert [e.seq for e in stored] == list(range(1, expected + 1))
    by_seq = dict(zip((e.seq for e in stored), _messages(stored), strict=True))
    for n, got in results.items():
        assert all(by_seq[s].startswith(f"{n}:") for s in got)
    assert outbox.stats().events == expected


# ---- against a model ------------------------------------------------------------------


class OutboxAgainstAList(RuleBasedStateMachine):
    """An unbounded outbox behaves like a list of (seq, message) with a counter."""

    def __init__(self) -> None:
        super().__init__()
        self.model: list[tuple[int, str]] = []
        self.last_seq = 0
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "outbox.db"
        self.box = Outbox(self.path, max_bytes=BIG)

    def teardown(self) -> None:
        self.box.close()
        self.dir.cleanup()

    @rule(messages=st.lists(st.text(max_size=20), min_size=1, max_size=5))
    def append(self, messages: list[str]) -> None:
        if len(messages) == 1:
            seqs = [self.box.append("agent.log", _log(messages[0]))]
        else:
            seqs = self.box.append_many(PendingEvent("agent.log", _log(m)) for m in messages)
        assert seqs == list(range(self.last_seq + 1, self.last_seq + len(messages) + 1))
        self.model += zip(seqs, messages, strict=True)
        self.last_seq = seqs[-1]

    @rule(offset=st.integers(-2, 8))
    def ack(self, offset: int) -> None:
        through = (self.model[0][0] if self.model else self.last_seq) + offset
        expected = [item for item in self.model if item[0] <= through]
        assert self.box.ack_through(through) == len(expected)
        self.model = [item for item in self.model if item[0] > through]

    @rule(after=st.integers(-1, 40), max_events=st.integers(1, 6))
    def peek(self, after: int, max_events: int) -> None:
        got = self.box.peek(after, max_events=max_events, max_bytes=BIG)
        expected = [item for item in self.model if item[0] > after][:max_events]
        assert [(e.seq, m) for e, m in zip(got, _messages(got), strict=True)] == expected

    @rule()
    def reopen(self) -> None:
        self.box.close()
        self.box = Outbox(self.path, max_bytes=BIG)

    @invariant()
    def stats_agree(self) -> None:
        stats = self.box.stats()
        assert stats.events == len(self.model)
        assert stats.last_seq == self.last_seq
        assert stats.dropped_total == 0
        assert (stats.bytes == 0) == (not self.model)


OutboxAgainstAList.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_outbox_against_a_list = OutboxAgainstAList.TestCase
