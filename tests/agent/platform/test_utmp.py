"""utmp records: the 384-byte glibc x86_64 layout, written two independent ways.

No second user can log on to this machine and it keeps no /var/run/utmp, so the
files are written by the test: byte by byte at the offsets of glibc's struct utmp,
and by util-linux's ``utmpdump -r`` (which packs glibc's own struct) when present.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.utmp import (
    BOOT_TIME,
    DEAD_PROCESS,
    RECORD,
    USER_PROCESS,
    UtmpRecord,
    parse,
    read,
    sessions,
)


def utmp_record(
    kind: int,
    *,
    pid: int = 0,
    line: str = "",
    ut_id: str = "",
    user: str = "",
    host: str = "",
    sec: int = 0,
    usec: int = 0,
    addr: bytes = b"",
    session: int = 0,
) -> bytes:
    """One struct utmp, placed field by field at glibc's x86_64 offsets."""
    buf = bytearray(384)
    struct.pack_into("<h", buf, 0, kind)  # ut_type, then 2 bytes of padding
    struct.pack_into("<i", buf, 4, pid)  # ut_pid
    buf[8 : 8 + 32] = line.encode().ljust(32, b"\0")  # ut_line
    buf[40 : 40 + 4] = ut_id.encode().ljust(4, b"\0")  # ut_id
    buf[44 : 44 + 32] = user.encode().ljust(32, b"\0")  # ut_user
    buf[76 : 76 + 256] = host.encode().ljust(256, b"\0")  # ut_host
    struct.pack_into("<hh", buf, 332, 0, 0)  # ut_exit
    struct.pack_into("<i", buf, 336, session)  # ut_session
    struct.pack_into("<ii", buf, 340, sec, usec)  # ut_tv
    buf[348 : 348 + 16] = addr.ljust(16, b"\0")  # ut_addr_v6; then 20 reserved bytes
    return bytes(buf)


def test_layout_is_384_bytes() -> None:
    assert RECORD.size == 384


def test_parse_records_written_at_glibc_offsets() -> None:
    data = utmp_record(BOOT_TIME, line="~", ut_id="~~", user="reboot", sec=1_736_755_200)
    data += utmp_record(
        USER_PROCESS,
        pid=4321,
        line="pts/0",
        ut_id="ts/0",
        user="alice",
        host="203.0.113.7",
        sec=1_736_763_072,
        usec=345_678,
        addr=bytes([203, 0, 113, 7]),
        session=4321,
    )
    data += b"\x07\x00partial"  # a record being written: ignored
    boot, login = parse(data)
    assert boot.type == BOOT_TIME and boot.user == "reboot"
    assert login == UtmpRecord(
        type=USER_PROCESS,
        pid=4321,
        line="pts/0",
        id="ts/0",
        user="alice",
        host="203.0.113.7",
        session=4321,
        time_us=1_736_763_072_345_678,
        address="203.0.113.7",
    )


def test_ipv6_address() -> None:
    addr = bytes.fromhex("20010db8000000000000000000000042")
    (record,) = parse(utmp_record(USER_PROCESS, user="bob", line="pts/1", addr=addr))
    assert record.address == "2001:db8::42"


def test_parse_a_file_written_by_utmpdump(tmp_path: Path) -> None:
    """util-linux packs glibc's struct utmp itself: an independent writer."""
    if shutil.which("utmpdump") is None:
        pytest.skip("utmpdump (util-linux) is not installed")
    text = (
        "[2] [00000] [~~  ] [reboot  ] [~           ] [6.1.0-28-amd64      ] "
        "[0.0.0.0        ] [2025-01-13T08:00:00,000000+00:00]\n"
        "[7] [04321] [ts/0] [alice   ] [pts/0       ] [203.0.113.7         ] "
        "[203.0.113.7    ] [2025-01-13T10:11:12,345678+00:00]\n"
        "[7] [01200] [tty2] [bob     ] [tty2        ] [                    ] "
        "[0.0.0.0        ] [2025-01-13T10:30:00,000000+00:00]\n"
        "[8] [04321] [ts/0] [        ] [pts/0       ] [                    ] "
        "[0.0.0.0        ] [2025-01-13T11:00:00,000000+00:00]\n"
    )
    path = tmp_path / "utmp"
    with path.open("wb") as out:
        subprocess.run(
            ["utmpdump", "-r"],
            input=text.encode(),
            stdout=out,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    records = read(path)
    assert [r.type for r in records] == [BOOT_TIME, USER_PROCESS, USER_PROCESS, DEAD_PROCESS]
    alice = records[1]
    assert (alice.user, alice.line, alice.host, alice.address, alice.pid) == (
        "alice",
        "pts/0",
        "203.0.113.7",
        "203.0.113.7",
        4321,
    )
    assert alice.time_us == 1_736_763_072_345_678
    found = sessions(records)
    assert list(found.active) == ["tty2"]  # alice logged out
    assert found.ended_us == {"pts/0": 1_736_766_000_000_000}


def test_sessions_replay_in_order() -> None:
    records = parse(
        utmp_record(USER_PROCESS, pid=1, line="tty1", user="old", sec=10)
        + utmp_record(BOOT_TIME, line="~", user="reboot", sec=20)  # ends everything before
        + utmp_record(USER_PROCESS, pid=2, line="pts/0", user="alice", sec=30)
        + utmp_record(DEAD_PROCESS, pid=2, line="pts/0", sec=40)
        + utmp_record(USER_PROCESS, pid=3, line="pts/0", user="bob", sec=50)  # line reused
        + utmp_record(USER_PROCESS, pid=4, line="tty2", user="", sec=60)  # no user: ignored
    )
    found = sessions(records)
    assert {line: r.user for line, r in found.active.items()} == {"pts/0": "bob"}
    assert found.ended_us == {"pts/0": 40_000_000}


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read(tmp_path / "utmp")
