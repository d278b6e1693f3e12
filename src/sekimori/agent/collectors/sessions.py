"""The session collector: logon/logoff, boot/shutdown, suspend/resume.

* Logon/logoff: the utmp file (``utmp_path``) is re-read when it changes (its inode,
  size or mtime) and its open sessions compared with those last reported. Local
  (tty, X display) and remote (SSH) logons alike; utmp keeps no logon of a session
  that opened and closed between two looks, and graphical sessions that do not
  write utmp (some Wayland desktops) are not seen.
* Boot: once per boot id. When the id differs from the one in the cursor, the PC was
  off or restarting from the time the agent last saw it (``last_seen_us``, saved
  every ``heartbeat_seconds`` and when the agent stops) to the boot time: a
  ``session.shutdown`` at that time, logoffs of the sessions still open, then
  ``session.boot``.
* Suspend/resume: the difference between CLOCK_BOOTTIME and CLOCK_MONOTONIC grows by
  the time spent suspended; a growth of ``suspend_threshold_seconds`` or more is a
  suspend of that length, noticed within one interval of the wake-up.
* Screen lock/unlock: not observed (only logind and the desktop's screen saver know,
  over D-Bus, which is not read here; this test environment has neither).

The cursor (boot id, last seen, open sessions) is saved with the events, so a
restart repeats nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux import power, utmp
from sekimori.clock import now_us
from sekimori.protocol.events.session import Boot, Logoff, Logon, Resume, Shutdown, Suspend

__all__ = ["SessionCollector", "SessionSettings"]

log = logging.getLogger(__name__)


class SessionSettings(CollectorSettings):
    interval_seconds: float = 5.0
    utmp_path: str = "/var/run/utmp"
    boot_id_path: str = "/proc/sys/kernel/random/boot_id"
    stat_path: str = "/proc/stat"
    # How often "the PC is still on" is saved: the error bound of a shutdown's time.
    heartbeat_seconds: float = 60.0
    suspend_threshold_seconds: float = 1.0


class _Session(msgspec.Struct, frozen=True):
    tty: str
    user: str
    host: str
    address: str
    remote: bool
    pid: int
    login_time_us: int


class _Cursor(msgspec.Struct):
    boot_id: str
    last_seen_us: int
    agent_stopped: bool = False
    sessions: list[_Session] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Cursor)


def _is_remote(record: utmp.UtmpRecord) -> bool:
    # sshd records the peer's address; a local X logon records its display (":0")
    # and terminal multiplexers a name like "tmux(1234).%0".
    if record.address:
        return True
    host = record.host
    return bool(host) and not host.startswith(":") and "(" not in host


def _session(record: utmp.UtmpRecord) -> _Session:
    return _Session(
        tty=record.line,
        user=record.user,
        host=record.host,
        address=record.address,
        remote=_is_remote(record),
        pid=record.pid,
        login_time_us=record.time_us,
    )


def _logon(s: _Session, *, present: bool) -> PendingEvent:
    payload = Logon(
        user=s.user,
        tty=s.tty,
        host=s.host,
        address=s.address,
        remote=s.remote,
        pid=s.pid,
        login_time_us=s.login_time_us,
        present_at_start=present,
    )
    return PendingEvent("session.logon", payload, os_user=s.user, time_us=s.login_time_us)


def _logoff(s: _Session, at_us: int, reason: str = "logout") -> PendingEvent:
    payload = Logoff(
        user=s.user,
        tty=s.tty,
        host=s.host,
        address=s.address,
        remote=s.remote,
        pid=s.pid,
        login_time_us=s.login_time_us,
        reason="shutdown" if reason == "shutdown" else "logout",
    )
    return PendingEvent("session.logoff", payload, os_user=s.user, time_us=at_us)


class SessionCollector(Collector):
    name: ClassVar[str] = "sessions"
    settings_type: ClassVar[type[CollectorSettings]] = SessionSettings
    settings: SessionSettings

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        super().__init__(settings, sink)
        # (CLOCK_BOOTTIME, CLOCK_MONOTONIC) in ns; replaceable so that tests can
        # simulate a suspend, which this machine cannot do.
        self.clocks: Callable[[], tuple[int, int]] = power.clocks
        self._utmp_signature: tuple[int, int, int] | None = None
        self._utmp_warned = False

    def run(self, stop: threading.Event) -> None:
        conf = self.settings
        try:
            boot_id = power.boot_id(conf.boot_id_path)
            boot_time = power.boot_time_us(conf.stat_path)
        except (OSError, ValueError) as exc:
            raise CollectorError(f"cannot read the boot id or boot time: {exc}") from exc
        cursor = self._load()
        sessions, ended = self._read_sessions() or ([], {})
        events = self._start_events(cursor, boot_id, boot_time, sessions, ended)
        state = _Cursor(boot_id=boot_id, last_seen_us=now_us(), sessions=sessions)
        self.sink.emit_many(events, cursor=_encoder.encode(state))

        boottime, monotonic = self.clocks()
        asleep_ns = boottime - monotonic
        threshold_ns = int(conf.suspend_threshold_seconds * 1e9)
        last_saved = time.monotonic()
        while not stop.wait(conf.interval_seconds):
            events = []
            boottime, monotonic = self.clocks()
            grown = boottime - monotonic - asleep_ns
            asleep_ns += grown
            if grown >= threshold_ns:
                noticed = now_us()
                slept = grown // 1000
                events.append(
                    PendingEvent(
                        "session.suspend", Suspend(suspended_us=slept), time_us=noticed - slept
                    )
                )
                events.append(
                    PendingEvent("session.resume", Resume(suspended_us=slept), time_us=noticed)
                )
            read = self._read_sessions()
            if read is not None:
                events += self._diff(state.sessions, read[0], read[1])
                state.sessions = read[0]
            if events or time.monotonic() - last_saved >= conf.heartbeat_seconds:
                state.last_seen_us = now_us()
                self.sink.emit_many(events, cursor=_encoder.encode(state))
                last_saved = time.monotonic()
        # Stopped: remember when, and that it was an orderly stop (a shutdown stops
        # the agent this way; a power cut does not).
        state.last_seen_us = now_us()
        state.agent_stopped = True
        self.sink.emit_many([], cursor=_encoder.encode(state))

    def _load(self) -> _Cursor | None:
        raw = self.sink.cursor()
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            log.warning("session collector cursor unreadable; starting afresh")
            return None

    def _start_events(
        self,
        cursor: _Cursor | None,
        boot_id: str,
        boot_time: int,
        sessions: list[_Session],
        ended: dict[str, int],
    ) -> list[PendingEvent]:
        if cursor is None:
            # First run on this PC: this boot and the open sessions, once.
            boot = Boot(boot_id=boot_id, boot_time_us=boot_time)
            return [
                PendingEvent("session.boot", boot, time_us=boot_time),
                *(_logon(s, present=True) for s in sessions),
            ]
        if cursor.boot_id == boot_id:
            return self._diff(cursor.sessions, sessions, ended)
        off_at = cursor.last_seen_us
        shutdown = Shutdown(
            boot_id=cursor.boot_id, last_seen_us=off_at, agent_stopped=cursor.agent_stopped
        )
        boot = Boot(
            boot_id=boot_id,
            boot_time_us=boot_time,
            previous_boot_id=cursor.boot_id,
            previous_last_seen_us=off_at,
        )
        return [
            *(_logoff(s, off_at, "shutdown") for s in cursor.sessions),
            PendingEvent("session.shutdown", shutdown, time_us=off_at),
            PendingEvent("session.boot", boot, time_us=boot_time),
            *self._diff([], sessions, ended),
        ]

    def _read_sessions(self) -> tuple[list[_Session], dict[str, int]] | None:
        """The open sessions and line release times, or None when utmp is unchanged
        since the last read or cannot be read (the last known sessions then stand)."""
        path = self.settings.utmp_path
        try:
            st = os.stat(path)
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            if signature == self._utmp_signature:
                return None
            records = utmp.read(path)
        except OSError as exc:
            if not self._utmp_warned:
                log.warning("cannot read %s (logons are not seen): %s", path, exc.strerror or exc)
                self._utmp_warned = True
            return None
        self._utmp_signature = signature
        found = utmp.sessions(records)
        return [_session(r) for r in found.active.values()], found.ended_us

    @staticmethod
    def _diff(
        before: list[_Session], now: list[_Session], ended: dict[str, int]
    ) -> list[PendingEvent]:
        events: list[PendingEvent] = []
        current = set(now)
        for s in before:
            if s not in current:
                released = ended.get(s.tty, 0)
                events.append(_logoff(s, released if released >= s.login_time_us else now_us()))
        previous = set(before)
        events += [_logon(s, present=False) for s in now if s not in previous]
        return events
