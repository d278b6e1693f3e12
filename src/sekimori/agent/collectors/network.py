"""The network collector: which process talks to which remote endpoint.

Every ``sample_seconds`` it reads the PC's socket table (sock_diag, see
``sekimori.agent.platform.linux.netconns``) and keeps the outbound sockets; every
``interval_seconds`` it emits one ``network.connections`` summary with one entry per
(process, protocol, remote address, remote port), counting the distinct sockets seen.
An entry already present in the previous period is left out (unless
``report_persistent``): a long-lived connection is reported once, with the time the
agent first saw it. Periods with nothing to report emit nothing.

Sampling means a connection that opens and closes between two samples is not seen;
lowering ``sample_seconds`` trades CPU for coverage (mapping a new socket to its
process reads the fd tables of processes until it is found). Loopback peers are left
out unless ``include_loopback``.

The cursor (saved with each summary) holds the last period's entries, so a restarted
agent does not report them again.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux import netconns, procs
from sekimori.clock import now_us
from sekimori.protocol.events.network import Connection, NetworkConnections

__all__ = ["NetworkCollector", "NetworkSettings"]

# Distinct local ports listed per entry; ``count`` carries the full number.
_MAX_LOCAL_PORTS = 8


class NetworkSettings(CollectorSettings, kw_only=True):
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """How often a summary is emitted."""
    sample_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How often the socket table is read (at most once per interval)."""
    include_loopback: bool = False
    include_udp: bool = True
    report_persistent: bool = False
    """Repeat entries that were already present in the previous period."""
    exclude_executables: list[str] = msgspec.field(default_factory=list)
    """Glob patterns on the executable's path ("*" also matches "/")."""
    max_entries: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """Entries per summary; the rest are counted in ``omitted``."""


# (pid, exe, protocol, remote address, remote port)
_Key = tuple[int, str, Literal["tcp", "udp"], str, int]


@dataclass(slots=True)
class _Entry:
    user: str
    first_seen_us: int
    last_seen_us: int
    sockets: set[int] = field(default_factory=set)
    local_ports: list[int] = field(default_factory=list)


class _CursorEntry(msgspec.Struct, array_like=True):
    pid: int
    exe: str
    protocol: Literal["tcp", "udp"]
    remote_address: str
    remote_port: int
    first_seen_us: int


class _Cursor(msgspec.Struct):
    boot_id: str
    entries: list[_CursorEntry]


_cursor_decoder = msgspec.msgpack.Decoder(_Cursor)
_encoder = msgspec.msgpack.Encoder()


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


class NetworkCollector(Collector):
    name = "network"
    settings_type = NetworkSettings

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        super().__init__(settings, sink)
        if not isinstance(settings, NetworkSettings):
            raise TypeError(f"expected NetworkSettings, got {type(settings).__name__}")
        self.conf = settings
        self.owners = netconns.SocketOwners()
        patterns = [fnmatch.translate(p) for p in settings.exclude_executables]
        self._exclude = re.compile("|".join(patterns)) if patterns else None
        self._boot_id = ""
        self._current: dict[_Key, _Entry] = {}
        self._previous: dict[_Key, int] = {}
        self._period_start_us = 0

    def run(self, stop: threading.Event) -> None:
        try:
            self._boot_id = procs.boot_id()
        except OSError as exc:
            raise CollectorError(f"cannot read /proc: {exc}", permanent=True) from None
        self._previous = self._load_cursor()
        interval = self.conf.interval_seconds
        sample = min(self.conf.sample_seconds, interval)
        self._period_start_us = now_us()
        period_end = time.monotonic() + interval
        while True:
            self.sample()
            if time.monotonic() >= period_end:
                self.summarize()
                period_end = time.monotonic() + interval
            if stop.wait(min(sample, max(period_end - time.monotonic(), 0.0))):
                break
        # A last look, so the cursor knows what is open now: the next run must not
        # report it again.
        self.sample()
        self.summarize()

    # ---- sampling and summarizing ------------------------------------------------

    def sample(self) -> None:
        """Read the socket table once and add what it shows to the current period."""
        try:
            rows = netconns.read_outbound(include_udp=self.conf.include_udp)
        except OSError as exc:
            raise CollectorError(f"cannot read the socket table: {exc}") from None
        if not self.conf.include_loopback:
            rows = [row for row in rows if not _is_loopback(row.remote_address)]
        owners = self.owners.find(row.inode for row in rows)
        exes: dict[int, str] = {0: ""}
        now = now_us()
        for row in rows:
            pid = owners.get(row.inode, 0)
            exe = exes.get(pid)
            if exe is None:
                path, _ = procs.read_exe(pid)
                exe = exes[pid] = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            if self._exclude is not None and self._exclude.fullmatch(exe):
                continue
            key: _Key = (pid, exe, row.protocol, row.remote_address, row.remote_port)
            entry = self._current.get(key)
            if entry is None:
                first = self._previous.get(key, now)
                entry = self._current[key] = _Entry(procs.user_name(row.uid), first, now)
            entry.last_seen_us = now
            entry.sockets.add(row.inode)
            if row.local_port not in entry.local_ports and len(entry.local_ports) < (
                _MAX_LOCAL_PORTS
            ):
                entry.local_ports.append(row.local_port)

    def summarize(self) -> None:
        """Emit the period's summary (if it has anything new) and start a new period."""
        end = now_us()
        fresh = [
            (key, entry)
            for key, entry in self._current.items()
            if self.conf.report_persistent or key not in self._previous
        ]
        fresh.sort(key=lambda item: (item[1].first_seen_us, item[0]))
        limit = self.conf.max_entries
        events = []
        if fresh:
            summary = NetworkConnections(
                period_start_us=self._period_start_us,
                period_end_us=end,
                connections=[
                    Connection(
                        pid=pid,
                        exe=exe,
                        user=entry.user,
                        protocol=protocol,
                        remote_address=address,
                        remote_port=port,
                        local_ports=sorted(entry.local_ports),
                        count=len(entry.sockets),
                        first_seen_us=entry.first_seen_us,
                        last_seen_us=entry.last_seen_us,
                    )
                    for (pid, exe, protocol, address, port), entry in fresh[:limit]
                ],
                omitted=max(0, len(fresh) - limit),
            )
            events.append(PendingEvent("network.connections", summary, time_us=end))
        self._previous = {key: entry.first_seen_us for key, entry in self._current.items()}
        self._current = {}
        self._period_start_us = end
        cursor = _Cursor(
            self._boot_id,
            [_CursorEntry(*key, first_seen_us=first) for key, first in self._previous.items()],
        )
        self.sink.emit_many(events, cursor=_encoder.encode(cursor))

    def _load_cursor(self) -> dict[_Key, int]:
        raw = self.sink.cursor()
        if raw is None:
            return {}
        try:
            cursor = _cursor_decoder.decode(raw)
        except msgspec.DecodeError:
            return {}
        if cursor.boot_id != self._boot_id:
            return {}  # pids of another boot mean nothing
        return {
            (e.pid, e.exe, e.protocol, e.remote_address, e.remote_port): e.first_seen_us
            for e in cursor.entries
        }
