"""The process collector: every program that starts and stops, with its hash.

How it sees processes, cheaply:

* Every ``interval_seconds`` it lists /proc (one directory read) and reads the
  details of a process only when its pid is new, or when the pid's /proc directory
  changed and its start time shows the pid was reused. A PC with hundreds of
  processes costs a few hundred microseconds per tick.
* Where the kernel permits (outside containers: the initial user and pid
  namespaces; before Linux 6.6 also CAP_NET_ADMIN), it also subscribes to the
  kernel's process-events connector, which announces each fork, exec and exit as it
  happens: a process that lives a few milliseconds is examined while it runs and its
  exit is timed exactly. A fork that has not exec'd by the next tick is examined
  then (what a listing of /proc would have found), so with the connector /proc is
  listed in full only every ``_RECONCILE_SECONDS`` and after the kernel dropped
  events, as a safety net. Where it is not permitted, polling alone runs and a process
  that lives less than the interval is caught only if a tick falls in its life
  (a process living 0.2 s is seen with probability ~0.2 at the default 1 s).
  ``connector_status`` says which mode runs and why.

What it reports (see ``sekimori.protocol.events.process``): on its first run on a
PC (or after a reboot), one ``process.running`` per process already running; then
``process.started`` and ``process.stopped``. Kernel threads are not reported;
processes whose executable matches ``exclude_executables`` produce no events at all.
Its cursor holds the reported processes of this boot, saved with the events: a
restarted agent neither repeats them nor misses the ones that ended while it was down
(their ``process.stopped`` comes at restart, with ``exact_time`` false).
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux import procs
from sekimori.agent.platform.linux.proc_connector import (
    ConnectorUnavailable,
    ProcConnector,
    ProcEvent,
)
from sekimori.clock import now_us
from sekimori.protocol.events.process import ProcessRunning, ProcessStarted, ProcessStopped

__all__ = ["ProcessCollector", "ProcessSettings"]


class ProcessSettings(CollectorSettings, kw_only=True):
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    exclude_executables: list[str] = msgspec.field(default_factory=list)
    """Glob patterns on the executable's path ("*" also matches "/")."""
    hash_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 512 * 1024 * 1024
    """Executables larger than this are not hashed (hash_status "too_large"); 0 turns
    hashing off. 512 MiB and not less: Debian's Chromium binary alone is ~300 MB."""
    max_argv_bytes: Annotated[int, msgspec.Meta(ge=64, le=1 << 20)] = 4096
    use_connector: bool = True
    """Use the kernel's process-events connector where permitted."""


@dataclass(slots=True)
class _Proc:
    """What the collector remembers of a process it has seen."""

    start_ticks: int
    dir_inode: int
    """Inode of /proc/<pid> at the last look (-1: unknown); a change prompts a re-read."""
    ppid: int
    name: str
    exe: str
    uid: int
    start_us: int
    seen_us: int
    """When it was last examined: kernel events older than this are already reflected."""
    reported: bool
    """False for kernel threads and excluded executables: no events."""
    recheck: bool = False
    """Polling only: read it again at the next tick, to see an exec right after fork
    (a child is sometimes caught between fork and exec, still its parent's image)."""
    argv: list[str] | None = None
    """Kept only while ``recheck`` is pending, to compare."""


class _CursorProc(msgspec.Struct, array_like=True):
    pid: int
    start_ticks: int
    ppid: int
    name: str
    exe: str
    uid: int


class _Cursor(msgspec.Struct):
    boot_id: str
    boot_us: int
    procs: list[_CursorProc]


_cursor_decoder = msgspec.msgpack.Decoder(_Cursor)
_encoder = msgspec.msgpack.Encoder()

# Bytes hashed between two looks at the kernel's events (~3 ms with SHA-NI).
_HASH_SLICE = 4 << 20
# How long a stopping collector may spend finishing hashes before it gives up on them.
_STOP_HASH_SECONDS = 0.8
# With the connector, how often /proc is listed anyway (it finds nothing the kernel's
# events did not announce, unless events were lost; listing 400 pids costs ~0.8 ms).
_RECONCILE_SECONDS = 30.0


@dataclass(slots=True)
class _Queued:
    """An event waiting to be emitted (a started event waits for its hash)."""

    event: PendingEvent
    job: procs.HashJob | None = None
    reported: _CursorProc | None = None
    """Started/running: the process, added to the cursor when this is emitted."""
    ended: int | None = None
    """Stopped: the pid, removed from the cursor when this is emitted."""


def _text(value: str) -> str:
    """A path from the OS as valid UTF-8 (undecodable bytes become U+FFFD)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class ProcessCollector(Collector):
    name = "processes"
    settings_type = ProcessSettings

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        super().__init__(settings, sink)
        if not isinstance(settings, ProcessSettings):
            raise TypeError(f"expected ProcessSettings, got {type(settings).__name__}")
        self.conf = settings
        self.hasher = procs.ExeHasher(settings.hash_max_bytes)
        self.connector_status = "not started"
        self.missed_short_lived = 0
        """Processes announced by the kernel that ended before they could be read."""
        self.overruns = 0
        """Times the kernel dropped process events because the collector was slow."""
        patterns = [fnmatch.translate(p) for p in settings.exclude_executables]
        self._exclude = re.compile("|".join(patterns)) if patterns else None
        self._known: dict[int, _Proc] = {}
        self._forked: dict[int, int] = {}
        """Connector: pids forked since the last tick that have not exec'd (yet)."""
        self._queue: list[_Queued] = []
        # What the emitted events say is running: exactly what the cursor holds, so a
        # restart neither repeats an emitted event nor loses one still queued.
        self._emitted: dict[int, _CursorProc] = {}
        self._boot_id = ""
        self._boot_us = 0
        self._polling_only = True

    # ---- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        try:
            self._boot_id = procs.boot_id()
            self._boot_us = procs.boot_wall_us()
            procs.scan_pids()
        except OSError as exc:
            raise CollectorError(f"cannot read /proc: {exc}", permanent=True) from None
        connector = self._open_connector()
        self._polling_only = connector is None
        try:
            self._first_scan(stop)
            self._flush()
            interval = self.conf.interval_seconds
            next_tick = time.monotonic() + interval
            next_scan = next_tick if connector is None else next_tick + _RECONCILE_SECONDS
            while not stop.is_set():
                # While hashes are running, only peek at the kernel's events between
                # slices of hashing, so short-lived processes are read while they live.
                busy = self.hasher.busy
                wait = 0.0 if busy else min(max(next_tick - time.monotonic(), 0.0), 1.0)
                if connector is not None:
                    events, overrun = connector.read(wait)
                    for event in events:
                        self._on_kernel_event(event)
                    if overrun:
                        self.overruns += 1
                        next_tick = next_scan = 0.0  # messages were lost: list /proc now
                elif wait:
                    stop.wait(wait)
                if busy:
                    self.hasher.work(_HASH_SLICE)
                    if not self.hasher.busy:
                        self._flush()  # the hashes are done: do not wait for the tick
                now = time.monotonic()
                if now >= next_tick:
                    self._update_boot_time()
                    if now >= next_scan:
                        self._scan()
                        next_scan = now + (interval if connector is None else _RECONCILE_SECONDS)
                    else:
                        self._examine_forks()
                    self._flush()
                    next_tick = time.monotonic() + interval
            deadline = time.monotonic() + _STOP_HASH_SECONDS
            while self.hasher.busy and time.monotonic() < deadline:
                self.hasher.work(_HASH_SLICE)
            # Events still waiting for a hash are dropped, and are not in the cursor:
            # after a restart a process still running is reported as started then.
            self._flush()
        finally:
            self.hasher.close()
            if connector is not None:
                connector.close()

    def _open_connector(self) -> ProcConnector | None:
        if not self.conf.use_connector:
            self.connector_status = "off: disabled by settings (polling /proc)"
            return None
        try:
            connector = ProcConnector(forks=True, deferred=True)
        except ConnectorUnavailable as exc:
            self.connector_status = f"unavailable: {exc} (polling /proc)"
            return None
        self.connector_status = "active"
        return connector

    # ---- what was seen -----------------------------------------------------------

    def _first_scan(self, stop: threading.Event) -> None:
        """Take the snapshot, or, with a cursor of this boot, resume where we were."""
        previous = self._load_cursor()
        kind = "process.running" if previous is None else "process.started"
        for pid, dir_inode in procs.scan_pids().items():
            if stop.is_set():
                return  # the rest is reported as started after the restart
            stat = procs.read_stat(pid)
            if stat is None:
                continue
            old = previous.pop(pid, None) if previous is not None else None
            if old is not None and old.start_ticks == stat.start_ticks:
                self._emitted[pid] = old
                self._known[pid] = _Proc(
                    old.start_ticks,
                    dir_inode,
                    old.ppid,
                    old.name,
                    old.exe,
                    old.uid,
                    procs.ticks_to_us(old.start_ticks, self._boot_us),
                    now_us(),
                    reported=True,
                )
                continue
            if old is not None:
                self._stopped_from_cursor(old)
            self._examine(pid, dir_inode, stat, kind, time_us=None)
        for old in (previous or {}).values():
            self._stopped_from_cursor(old)

    def _scan(self) -> None:
        pids = procs.scan_pids()
        # Every fork announced so far is in this listing.
        self._forked.clear()
        now = now_us()
        for pid in self._known.keys() - pids.keys():
            self._stopped(pid, now, exact=False)
        for pid, dir_inode in pids.items():
            known = self._known.get(pid)
            if known is not None and known.dir_inode == dir_inode:
                if known.recheck:
                    self._recheck(pid, known)
                continue
            stat = procs.read_stat(pid)
            if stat is None:
                continue  # ended meanwhile: its stop is seen at the next tick
            if known is not None:
                if stat.start_ticks == known.start_ticks:
                    known.dir_inode = dir_inode
                    if known.recheck:
                        self._recheck(pid, known)
                    continue
                self._stopped(pid, now, exact=False)  # the pid was reused
            self._examine(pid, dir_inode, stat, "process.started", time_us=None)

    def _examine_forks(self) -> None:
        """Connector: examine the processes forked since the last tick that still run
        without having exec'd (a listing of /proc would have found them)."""
        forked, self._forked = self._forked, {}
        for pid in forked:
            stat = procs.read_stat(pid)
            if stat is None or stat.state in ("Z", "X"):
                continue  # ended: it never ran a program of its own, nothing to report
            known = self._known.get(pid)
            if known is not None:
                if known.start_ticks == stat.start_ticks:
                    continue  # examined already (a scan, or an exec since)
                self._stopped(pid, now_us(), exact=False)
            self._examine(pid, -1, stat, "process.started", time_us=None)

    def _recheck(self, pid: int, known: _Proc) -> None:
        """Report the new image of a young process that exec'd after we first read it."""
        known.recheck = False
        argv, known.argv = known.argv, None
        stat = procs.read_stat(pid)
        if stat is None or stat.start_ticks != known.start_ticks:
            return
        info = procs.read_process(pid, stat, self.conf.max_argv_bytes)
        if info is not None and (_text(info.exe), info.argv) != (known.exe, argv):
            self._examine(pid, known.dir_inode, stat, "process.started", time_us=now_us())

    def _on_kernel_event(self, event: ProcEvent) -> None:
        known = self._known.get(event.pid)
        if known is not None and event.time_us < known.seen_us:
            return  # what we read of it already reflects this event
        if event.kind == "fork":
            self._forked[event.pid] = event.time_us
            return
        self._forked.pop(event.pid, None)
        if event.kind == "exit":
            if known is not None:
                self._stopped(event.pid, event.time_us, exact=True)
            return
        stat = procs.read_stat(event.pid)
        if stat is None or stat.state in ("Z", "X"):
            # Already ended (a zombie keeps its pid but no longer its exe and argv).
            self.missed_short_lived += 1
            return
        if known is not None and known.start_ticks != stat.start_ticks:
            self._stopped(event.pid, event.time_us, exact=False)
        if not self._examine(event.pid, -1, stat, "process.started", time_us=event.time_us):
            self.missed_short_lived += 1

    def _examine(
        self, pid: int, dir_inode: int, stat: procs.ProcStat, kind: str, time_us: int | None
    ) -> bool:
        """Read a process, remember it, and queue its event. False if it is gone."""
        seen = now_us()
        start_us = procs.ticks_to_us(stat.start_ticks, self._boot_us)
        if stat.kernel_thread:
            self._known[pid] = _Proc(
                stat.start_ticks, dir_inode, stat.ppid, stat.name, "", 0, start_us, seen, False
            )
            return True
        info = procs.read_process(pid, stat, self.conf.max_argv_bytes)
        if info is None:
            return False
        exe = _text(info.exe)
        reported = self._exclude is None or not self._exclude.fullmatch(exe)
        # A young process may not have exec'd yet; an old one in the snapshot has.
        recheck = self._polling_only and (kind == "process.started" or seen - start_us < 1_000_000)
        self._known[pid] = _Proc(
            stat.start_ticks,
            dir_inode,
            info.ppid,
            info.name,
            exe,
            info.uid,
            start_us,
            seen,
            reported,
            recheck=recheck,
            argv=info.argv if recheck else None,
        )
        if not reported:
            return True
        user = procs.user_name(info.uid)
        payload_type = ProcessRunning if kind == "process.running" else ProcessStarted
        payload = payload_type(
            pid=pid,
            ppid=info.ppid,
            name=info.name,
            exe=exe,
            exe_deleted=info.exe_deleted,
            argv=info.argv,
            argv_truncated=info.argv_truncated,
            user=user,
            uid=info.uid,
            start_time_us=start_us,
            hash_status="unreadable",  # filled in from the hash job when it is done
        )
        if time_us is None and kind == "process.started":
            time_us = start_us
        self._queue.append(
            _Queued(
                PendingEvent(kind, payload, user, time_us),
                job=self.hasher.start(pid, info.exe, info.exe_key),
                reported=_CursorProc(pid, stat.start_ticks, info.ppid, info.name, exe, info.uid),
            )
        )
        return True

    def _stopped(self, pid: int, time_us: int, *, exact: bool) -> None:
        known = self._known.pop(pid)
        if not known.reported:
            return
        user = procs.user_name(known.uid)
        payload = ProcessStopped(
            pid=pid,
            ppid=known.ppid,
            name=known.name,
            exe=known.exe,
            user=user,
            uid=known.uid,
            start_time_us=known.start_us,
            duration_us=max(0, time_us - known.start_us),
            exact_time=exact,
        )
        self._queue.append(
            _Queued(PendingEvent("process.stopped", payload, user, time_us), ended=pid)
        )

    def _stopped_from_cursor(self, old: _CursorProc) -> None:
        """A process reported before the restart that ended while we were down."""
        self._known[old.pid] = _Proc(
            old.start_ticks,
            -1,
            old.ppid,
            old.name,
            old.exe,
            old.uid,
            procs.ticks_to_us(old.start_ticks, self._boot_us),
            0,
            reported=True,
        )
        self._stopped(old.pid, now_us(), exact=False)

    # ---- cursor ------------------------------------------------------------------

    def _load_cursor(self) -> dict[int, _CursorProc] | None:
        raw = self.sink.cursor()
        if raw is None:
            return None
        try:
            cursor = _cursor_decoder.decode(raw)
        except msgspec.DecodeError:
            return None  # unreadable (an older format): take a fresh snapshot
        if cursor.boot_id != self._boot_id:
            return None  # another boot: every process of that one has ended
        self._update_boot_time(cursor.boot_us)
        return {p.pid: p for p in cursor.procs}

    def _update_boot_time(self, known: int | None = None) -> None:
        """Keep the boot time (which start times derive from) fixed unless the clock
        was set: computed afresh it jitters by microseconds, and a process's start
        time must be the same in every event, across restarts too."""
        fresh = procs.boot_wall_us()
        current = known if known is not None else self._boot_us
        self._boot_us = current if abs(fresh - current) < 1_000_000 else fresh

    def _flush(self) -> None:
        """Emit the queued events whose hashes are done, in order, with the cursor."""
        ready = 0
        for queued in self._queue:
            if queued.job is not None:
                result = queued.job.result
                if result is None:
                    break  # keep the order: later events wait for this hash
                payload = queued.event.payload
                if isinstance(payload, ProcessStarted):
                    payload.sha256 = result.sha256
                    payload.hash_status = result.status
            if queued.reported is not None:
                self._emitted[queued.reported.pid] = queued.reported
            if queued.ended is not None:
                self._emitted.pop(queued.ended, None)
            ready += 1
        if not ready:
            return
        cursor = _Cursor(self._boot_id, self._boot_us, list(self._emitted.values()))
        self.sink.emit_many(
            [queued.event for queued in self._queue[:ready]], cursor=_encoder.encode(cursor)
        )
        del self._queue[:ready]
