"""CUPS's page_log: its line format, and reading it incrementally across rotations.

cupsd writes one line per page or per job to /var/log/cups/page_log, formatted by
the PageLogFormat directive of cupsd.conf, by default::

    %p %u %j %T %P %C %{job-billing} %{job-originating-host-name} %{job-name} %{media} %{sides}

%p printer, %u user, %j job id, %T date and time ("[13/Jan/2025:10:11:12 +0900]",
with microseconds when LogTimeFormat is usecs), %P the page number, or "total" on
the line logged when a job's total is known, %C the number of copies of that page,
or the total number of impressions on a "total" line, %{name} a job attribute
("-" when unset). Attribute values are written as they are, so the job name may
contain spaces: it is taken as whatever lies between the fields before and after
it.

cupsd (and logrotate) rotate the file by renaming it (page_log.O, page_log.1) and
starting a new one: ``read_new`` notices the new inode, finishes the renamed old
file from where it stopped, then reads the new one from the start.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PAGE_LOG_FORMAT",
    "PageLogEntry",
    "PageLogFormat",
    "parse_time",
    "read_new",
]

DEFAULT_PAGE_LOG_FORMAT = (
    "%p %u %j %T %P %C %{job-billing} %{job-originating-host-name} %{job-name} %{media} %{sides}"
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_TIME = re.compile(
    r"\[(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r" ([+-])(\d{2})(\d{2})\]"
)
# How much of the log one read takes: a burst of printing is reported over a few ticks.
_READ_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class PageLogEntry:
    printer: str
    user: str
    job_id: int
    time_us: int | None
    page: str  # a page number, or "total"
    copies: int
    attributes: dict[str, str]  # %{name} fields; "" where the log has "-"


def parse_time(text: str) -> int | None:
    """CUPS's log time ("[13/Jan/2025:10:11:12 +0900]") in microseconds since the
    epoch, or None. Month names are always English in CUPS logs."""
    m = _TIME.fullmatch(text)
    if m is None or m.group(2) not in _MONTHS:
        return None
    day, _, year, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
    zone = dt.timezone(offset if sign == "+" else -offset)
    try:
        when = dt.datetime(
            int(year),
            _MONTHS[m.group(2)],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=zone,
        )
    except ValueError:
        return None
    micro = int((fraction or "0").ljust(6, "0"))
    return int(when.timestamp()) * 1_000_000 + micro


class PageLogFormat:
    """A PageLogFormat, able to split lines written in it."""

    def __init__(self, fmt: str = DEFAULT_PAGE_LOG_FORMAT) -> None:
        self.tokens = fmt.split()
        names = [t for t in self.tokens if t == "%{job-name}"]
        # Only one field may hold spaces; the job name is the one that does.
        self._free = self.tokens.index("%{job-name}") if names else None

    def parse(self, line: str) -> PageLogEntry | None:
        """The entry on ``line``, or None when the line does not fit the format."""
        words = line.rstrip("\n").split(" ")
        if self._free is None:
            values = self._take(self.tokens, words)
            if values is None or len(values[1]) != 0:
                return None
            return self._entry(values[0])
        left = self._take(self.tokens[: self._free], words)
        if left is None:
            return None
        right_tokens = self.tokens[self._free + 1 :]
        right = self._take(right_tokens[::-1], left[1][::-1], reverse=True)
        if right is None or not right[1]:
            return None
        fields = left[0] | right[0]
        fields["%{job-name}"] = " ".join(right[1][::-1])
        return self._entry(fields)

    @staticmethod
    def _take(
        directives: list[str], words: list[str], *, reverse: bool = False
    ) -> tuple[dict[str, str], list[str]] | None:
        """Match ``directives`` to the start of ``words``; the fields and the rest."""
        fields: dict[str, str] = {}
        i = 0
        for part in directives:
            if i >= len(words):
                return None
            if part == "%T":
                # The time is two words, "[day/month/year:h:m:s" and "+zone]".
                if i + 1 >= len(words):
                    return None
                pair = words[i : i + 2]
                fields[part] = " ".join(pair[::-1] if reverse else pair)
                i += 2
            elif part.startswith("%"):
                fields[part] = words[i]
                i += 1
            elif words[i] == part:
                i += 1
            else:
                return None
        return fields, words[i:]

    @staticmethod
    def _entry(fields: dict[str, str]) -> PageLogEntry | None:
        job = fields.get("%j", "")
        copies = fields.get("%C", "1")
        # Bounded so that a garbled line cannot make a number no event can carry.
        if not (job.isdigit() and copies.isdigit() and len(job) <= 9 and len(copies) <= 9):
            return None
        time_text = fields.get("%T")
        return PageLogEntry(
            printer=fields.get("%p", ""),
            user="" if fields.get("%u", "-") == "-" else fields["%u"],
            job_id=int(job),
            time_us=parse_time(time_text) if time_text else None,
            page=fields.get("%P", ""),
            copies=int(copies),
            attributes={
                key[2:-1]: "" if value == "-" else value
                for key, value in fields.items()
                if key.startswith("%{")
            },
        )


def _read_lines(path: str | Path, offset: int, *, to_end: bool) -> tuple[list[str], int]:
    """Complete lines from ``offset`` (all remaining text when ``to_end``), and the
    number of bytes they took."""
    with open(path, "rb") as f:
        f.seek(offset)
        # A rotated file no longer grows (and is at most cupsd's MaxLogSize): read it all.
        data = f.read() if to_end else f.read(_READ_LIMIT)
    if not to_end:
        data = data[: data.rfind(b"\n") + 1]
    text = data.decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()], len(data)


def read_new(
    path: str | Path, inode: int, offset: int, rotated: tuple[str, ...] = (".O", ".1")
) -> tuple[list[str], int, int]:
    """Lines appended to the log at ``path`` since (``inode``, ``offset``), and the new
    (inode, offset). A missing log gives no lines and keeps the position.

    Raises OSError when the log exists but cannot be read.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [], inode, offset
    lines: list[str] = []
    if inode and st.st_ino != inode:
        # Rotated: the rest of the old file, if it is still next to the new one.
        for suffix in rotated:
            old = f"{path}{suffix}"
            try:
                if os.stat(old).st_ino == inode:
                    lines, _ = _read_lines(old, offset, to_end=True)
                    break
            except FileNotFoundError:
                continue
        offset = 0
    elif st.st_size < offset:
        offset = 0  # truncated in place (copytruncate)
    new_lines, used = _read_lines(path, offset, to_end=False)
    return lines + new_lines, st.st_ino, offset + used
