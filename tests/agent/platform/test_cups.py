"""CUPS page_log lines and incremental reading.

There is no printer (nor CUPS) on this machine: the lines are recorded in the real
page_log format (cupsd's default PageLogFormat, and the classic format of older
CUPS) and written to tmp files by the test, which also rotates them the way cupsd
and logrotate do (rename, then a new file).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sekimori.agent.platform.linux.cups import PageLogEntry, PageLogFormat, parse_time, read_new

TOTAL = (
    "HP_LaserJet_M404 alice 42 [13/Jan/2025:10:11:12 +0900] total 3 - 192.168.1.20 "
    "Quarterly report (final).pdf iso_a4_210x297mm one-sided"
)
PAGE = (
    "Office bob 43 [13/Jan/2025:10:15:00 +0900] 2 4 acme-123 localhost Invoice 2025-01 "
    "na_letter_8.5x11in two-sided-long-edge"
)
T_TOTAL = 1_736_730_672_000_000  # 2025-01-13T01:11:12Z


def test_default_format_total_line() -> None:
    assert PageLogFormat().parse(TOTAL) == PageLogEntry(
        printer="HP_LaserJet_M404",
        user="alice",
        job_id=42,
        time_us=T_TOTAL,
        page="total",
        copies=3,
        attributes={
            "job-billing": "",
            "job-originating-host-name": "192.168.1.20",
            "job-name": "Quarterly report (final).pdf",
            "media": "iso_a4_210x297mm",
            "sides": "one-sided",
        },
    )


def test_default_format_page_line() -> None:
    entry = PageLogFormat().parse(PAGE + "\n")
    assert entry is not None
    assert (entry.printer, entry.user, entry.job_id, entry.page, entry.copies) == (
        "Office",
        "bob",
        43,
        "2",
        4,
    )
    assert entry.attributes["job-name"] == "Invoice 2025-01"
    assert entry.attributes["job-billing"] == "acme-123"
    assert entry.attributes["sides"] == "two-sided-long-edge"


def test_classic_format_without_job_name() -> None:
    fmt = PageLogFormat("%p %u %j %T %P %C %{job-billing}")
    entry = fmt.parse("DeskJet root 2 [20/May/1999:19:21:05 +0000] 1 1 acme-123")
    assert entry is not None
    assert entry.time_us == 927_228_065_000_000
    assert entry.attributes == {"job-billing": "acme-123"}
    assert fmt.parse("DeskJet root 2 [20/May/1999:19:21:05 +0000] 1 1 acme-123 extra") is None


def test_job_name_at_the_end_and_unknown_user() -> None:
    fmt = PageLogFormat("%p %u %j %T %P %C %{job-name}")
    entry = fmt.parse("P1 - 7 [01/Feb/2025:08:00:00 -0500] total 1 my  spaced   name")
    assert entry is not None
    assert entry.user == ""
    assert entry.attributes["job-name"] == "my  spaced   name"
    assert entry.time_us == parse_time("[01/Feb/2025:13:00:00 +0000]")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "P1 alice notanumber [13/Jan/2025:10:11:12 +0900] total 3 - host doc A4 one-sided",
        "P1 alice 1 [13/Jan/2025:10:11:12 +0900] total x - host doc A4 one-sided",
        "P1 alice 99999999999999999999 [13/Jan/2025:10:11:12 +0900] total 1 - h d A4 one-sided",
        "P1 alice 1 [13/Jan/2025:10:11:12",
    ],
)
def test_lines_not_in_the_format(line: str) -> None:
    assert PageLogFormat().parse(line) is None


def test_times() -> None:
    assert parse_time("[13/Jan/2025:10:11:12 +0900]") == T_TOTAL
    assert parse_time("[13/Jan/2025:10:11:12.250000 +0900]") == T_TOTAL + 250_000
    assert parse_time("[13/Jan/2025:01:11:12 +0000]") == T_TOTAL
    assert parse_time("[13/Foo/2025:10:11:12 +0900]") is None
    assert parse_time("[31/Feb/2025:10:11:12 +0900]") is None
    assert parse_time("13/Jan/2025:10:11:12 +0900") is None


def test_read_new_returns_complete_lines_once(tmp_path: Path) -> None:
    log = tmp_path / "page_log"
    assert read_new(log, 0, 0) == ([], 0, 0)  # no log yet
    log.write_text(TOTAL + "\n" + PAGE[:20])  # the second line is being written
    lines, inode, offset = read_new(log, 0, 0)
    assert lines == [TOTAL]
    assert offset == len(TOTAL) + 1
    assert read_new(log, inode, offset) == ([], inode, offset)
    with log.open("a") as f:
        f.write(PAGE[20:] + "\n")
    lines, inode, offset = read_new(log, inode, offset)
    assert lines == [PAGE]
    assert offset == log.stat().st_size


def test_rotation_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "page_log"
    log.write_text("first\n")
    lines, inode, offset = read_new(log, 0, 0)
    assert lines == ["first"]
    with log.open("a") as f:
        f.write("second\n")  # written before the rotation, not yet read
    log.rename(tmp_path / "page_log.O")
    log.write_text("third\n")
    lines, new_inode, offset = read_new(log, inode, offset)
    assert lines == ["second", "third"]
    assert new_inode != inode and offset == len("third\n")


def test_truncation_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "page_log"
    log.write_text("one\ntwo\n")
    _, inode, offset = read_new(log, 0, 0)
    log.write_text("new\n")  # same inode, shorter: truncated and rewritten
    assert read_new(log, inode, offset) == (["new"], inode, 4)
