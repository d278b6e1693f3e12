"""The printing collector on a page_log written by the test.

There is no printer and no CUPS on this machine: page_log lines recorded in cupsd's
default PageLogFormat are written to a tmp file (``page_log_path``), appended between
the collector's ticks, and the file is rotated as cupsd does (rename to page_log.O,
new file). The "CUPS absent" case is this machine's real state, made independent of
it by pointing ``cupsd_path`` and the log at paths that do not exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.printing import PrintingCollector, PrintingSettings
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.printing import PrintJob, PrintPage
from tests.agent.collectors.harness import RunningCollector
from tests.agent.platform.test_cups import PAGE, T_TOTAL, TOTAL

Seen = tuple[str, int, str | None, Payload]


def events(outbox: Outbox) -> list[Seen]:
    return [
        (e.kind, e.time_us, e.os_user, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 30)
    ]


def wait_for(outbox: Outbox, found: Callable[[int], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not found(len(events(outbox))):
        if time.monotonic() > deadline:
            pytest.fail(f"expected events did not appear; got {events(outbox)}")
        time.sleep(0.02)


class Running(RunningCollector):
    """The collector's run() in a thread (see harness.RunningCollector)."""

    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        settings.setdefault("interval_seconds", 0.05)
        conf = msgspec.convert(settings, PrintingSettings)
        collector = PrintingCollector(conf, Sink(outbox, "printing"))
        super().__init__(collector)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


@pytest.fixture
def page_log(tmp_path: Path) -> Path:
    (tmp_path / "cups").mkdir()
    return tmp_path / "cups" / "page_log"


def append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def test_jobs_and_pages_are_reported_once(outbox: Outbox, page_log: Path) -> None:
    append(page_log, TOTAL)
    running = Running(outbox, page_log_path=str(page_log))
    try:
        wait_for(outbox, lambda n: n == 1)
        append(page_log, PAGE, "this is not a page_log line")
        wait_for(outbox, lambda n: n == 2)
    finally:
        running.stop()
    job, page = events(outbox)
    assert job == (
        "printing.job",
        T_TOTAL,
        "alice",
        PrintJob(
            printer="HP_LaserJet_M404",
            user="alice",
            job_id=42,
            pages=3,
            document="Quarterly report (final).pdf",
            host="192.168.1.20",
            media="iso_a4_210x297mm",
            sides="one-sided",
        ),
    )
    assert page[:3] == ("printing.page", T_TOTAL + 228 * 10**6, "bob")
    assert page[3] == PrintPage(
        printer="Office",
        user="bob",
        job_id=43,
        page=2,
        copies=4,
        document="Invoice 2025-01",
        host="localhost",
        billing="acme-123",
        media="na_letter_8.5x11in",
        sides="two-sided-long-edge",
    )

    # Restarted: the cursor says where it stopped; only the new line is reported.
    running = Running(outbox, page_log_path=str(page_log))
    append(page_log, TOTAL.replace(" 42 ", " 44 "))
    wait_for(outbox, lambda n: n == 3)
    running.stop()
    assert [getattr(p, "job_id", 0) for _, _, _, p in events(outbox)] == [42, 43, 44]


def test_rotation_loses_and_repeats_nothing(outbox: Outbox, page_log: Path) -> None:
    append(page_log, TOTAL)
    running = Running(outbox, page_log_path=str(page_log))
    try:
        wait_for(outbox, lambda n: n == 1)
    finally:
        running.stop()
    # While the agent is stopped: one more job, then cupsd rotates the log.
    append(page_log, TOTAL.replace(" 42 ", " 45 "))
    page_log.rename(page_log.with_name("page_log.O"))
    append(page_log, TOTAL.replace(" 42 ", " 46 "))
    running = Running(outbox, page_log_path=str(page_log))
    try:
        wait_for(outbox, lambda n: n == 3)
        append(page_log, TOTAL.replace(" 42 ", " 47 "))
        wait_for(outbox, lambda n: n == 4)
    finally:
        running.stop()
    assert [getattr(p, "job_id", 0) for _, _, _, p in events(outbox)] == [42, 45, 46, 47]


def test_custom_page_log_format(outbox: Outbox, page_log: Path) -> None:
    append(page_log, "DeskJet root 2 [20/May/1999:19:21:05 +0000] 1 1 acme-123")
    running = Running(
        outbox, page_log_path=str(page_log), page_log_format="%p %u %j %T %P %C %{job-billing}"
    )
    wait_for(outbox, lambda n: n == 1)
    running.stop()
    assert events(outbox)[0][3] == PrintPage(
        printer="DeskJet", user="root", job_id=2, page=1, copies=1, billing="acme-123"
    )


def test_log_not_there_yet_is_waited_for(outbox: Outbox, page_log: Path) -> None:
    running = Running(outbox, page_log_path=str(page_log))
    try:
        time.sleep(0.2)  # a few ticks with no log: no failure, nothing reported
        assert events(outbox) == []
        append(page_log, TOTAL)
        wait_for(outbox, lambda n: n == 1)
    finally:
        running.stop()


def test_without_cups_the_collector_is_unavailable(outbox: Outbox, tmp_path: Path) -> None:
    conf = PrintingSettings(
        page_log_path=str(tmp_path / "no-cups" / "page_log"), cupsd_path=str(tmp_path / "cupsd")
    )
    with pytest.raises(CollectorError, match="CUPS not installed") as caught:
        PrintingCollector(conf, Sink(outbox, "printing")).run(threading.Event())
    assert caught.value.permanent
