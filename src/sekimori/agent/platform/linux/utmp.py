"""utmp records (/var/run/utmp: who is logged on; /var/log/wtmp has the same format).

The layout is glibc's ``struct utmp`` on 64-bit Linux (x86_64, aarch64): 384 bytes,
little-endian here, with 32-bit times (``__WORDSIZE_TIME64_COMPAT32``)::

    short ut_type; (2 bytes padding) pid_t ut_pid;
    char ut_line[32]; char ut_id[4]; char ut_user[32]; char ut_host[256];
    struct exit_status { short e_termination; short e_exit; } ut_exit;
    int32_t ut_session; struct { int32_t tv_sec; int32_t tv_usec; } ut_tv;
    int32_t ut_addr_v6[4]; char __glibc_reserved[20];

utmp is a table of slots, not a log: a logon writes a USER_PROCESS record into the
slot of its terminal line, and the logout overwrites that slot with a DEAD_PROCESS
record. ``sessions`` reads records in order, so it works on both files.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BOOT_TIME",
    "DEAD_PROCESS",
    "RECORD",
    "USER_PROCESS",
    "Sessions",
    "UtmpRecord",
    "parse",
    "read",
    "sessions",
]

RECORD = struct.Struct("<h2xi32s4s32s256shhiii16s20s")  # 384 bytes

# ut_type values (utmp.h)
BOOT_TIME = 2
USER_PROCESS = 7
DEAD_PROCESS = 8


@dataclass(frozen=True, slots=True)
class UtmpRecord:
    type: int
    pid: int
    line: str
    id: str
    user: str
    host: str
    session: int
    time_us: int
    address: str  # "" when unset


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _address(raw: bytes) -> str:
    if not any(raw):
        return ""
    # An IPv4 address fills only the first of the four 32-bit words.
    if not any(raw[4:]):
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def parse(data: bytes) -> list[UtmpRecord]:
    """The records in ``data``; a trailing partial record is ignored."""
    records: list[UtmpRecord] = []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        (kind, pid, line, ut_id, user, host, _term, _exit, session, sec, usec, addr, _) = (
            RECORD.unpack_from(data, offset)
        )
        records.append(
            UtmpRecord(
                type=kind,
                pid=pid,
                line=_text(line),
                id=_text(ut_id),
                user=_text(user),
                host=_text(host),
                session=session,
                time_us=(sec & 0xFFFFFFFF) * 1_000_000 + usec,
                address=_address(addr),
            )
        )
    return records


def read(path: str | Path = "/var/run/utmp") -> list[UtmpRecord]:
    """All records of a utmp/wtmp file. Raises OSError if it cannot be read."""
    return parse(Path(path).read_bytes())


@dataclass(frozen=True, slots=True)
class Sessions:
    """Who is logged on (one record per terminal line) and when lines were released."""

    active: dict[str, UtmpRecord]
    ended_us: dict[str, int]


def sessions(records: list[UtmpRecord]) -> Sessions:
    """Replay ``records`` in order: USER_PROCESS opens a session on its line,
    DEAD_PROCESS on the same line closes it, BOOT_TIME closes all."""
    active: dict[str, UtmpRecord] = {}
    ended: dict[str, int] = {}
    for record in records:
        if record.type == USER_PROCESS and record.user:
            active[record.line] = record
        elif record.type == DEAD_PROCESS and record.line:
            active.pop(record.line, None)
            ended[record.line] = record.time_us
        elif record.type == BOOT_TIME:
            active.clear()
    return Sessions(active, ended)
