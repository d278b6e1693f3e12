"""The agent's side of collection policies: keep, merge, apply, gate, and notify.

The server sends the device group's policy (``PolicyUpdate``) after every ``welcome``
and whenever it changes. ``PolicyManager.apply``:

1. checks the document (``decode_policy_document``); a bad one is refused with the
   field and reason, and nothing changes;
2. merges it over the agent's local collector settings (``effective_settings``) and
   hands the result to the supervisor, which validates it whole and restarts only the
   collectors whose settings changed (refused settings change nothing either);
3. sets the working-hours gate, keeps the policy in ``<state_dir>/policy.json``
   (atomic write) so the next start applies it before the server is reachable,
   writes or withdraws the notice to the PC's user, and records
   ``agent.policy_applied`` (and ``agent.notice_updated`` when the notice changed).

What a policy can do is bounded by its type (``sekimori.protocol.policy``): it turns
collectors on or off and sets what they record (intervals, watched paths,
exclusions, privacy options). No field names a program, and nothing here runs one.
Version 0 is the default of a group with no saved policy: the agent's own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import threading
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.clock import now_us
from sekimori.protocol import (
    InvalidPolicy,
    PolicyApplied,
    PolicyUpdate,
    decode_policy_document,
)
from sekimori.protocol.events import NoticeUpdated, PolicyApplication
from sekimori.protocol.policy import (
    COLLECTOR_NAMES,
    NoticeMode,
    Policy,
    WorkingHours,
    collector_overrides,
)

__all__ = [
    "NOTICE_FILE",
    "POLICY_FILE",
    "KeptPolicy",
    "PolicyManager",
    "WorkingHoursGate",
    "effective_settings",
    "load_kept_policy",
    "notice_text",
    "read_notice",
    "save_kept_policy",
]

log = logging.getLogger(__name__)

POLICY_FILE = "policy.json"
NOTICE_FILE = "notice.txt"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

SettingsFor = Callable[[Policy | None], dict[str, dict[str, Any]]]


# ---- the merge ------------------------------------------------------------------------


def effective_settings(
    local: Mapping[str, Mapping[str, Any]], policy: Policy | None
) -> dict[str, dict[str, Any]]:
    """The collectors' settings with ``policy`` merged over ``local``: every field the
    policy sets replaces the local one (lists too: the policy states the whole list),
    and the policy's ``enabled`` always wins. A collector the result disables keeps
    only ``enabled``, so the supervisor does not even import it. Machine-local fields
    (a display, a log path) are never in a policy and stay as they are."""
    out = {name: dict(values) for name, values in local.items()}
    if policy is None:
        return out
    for name in COLLECTOR_NAMES:
        section = {**out.get(name, {}), **collector_overrides(policy, name)}
        out[name] = section if section["enabled"] else {"enabled": False}
    return out


# ---- working hours --------------------------------------------------------------------


class WorkingHoursGate:
    """``gate(time_us)``: whether an event at that time falls in the policy's working
    hours (always True without them). Thread-safe: collectors call it from their
    threads while ``set`` swaps the window in one assignment."""

    def __init__(self, hours: WorkingHours | None = None) -> None:
        self._window: tuple[zoneinfo.ZoneInfo, frozenset[int], int, int] | None = None
        self.set(hours)

    def set(self, hours: WorkingHours | None) -> None:
        """Use ``hours`` from now on. Raises zoneinfo.ZoneInfoNotFoundError for a time
        zone this PC does not know (``decode_policy_document`` checks it first)."""
        if hours is None:
            self._window = None
            return
        self._window = (
            zoneinfo.ZoneInfo(hours.timezone),
            frozenset(_DAYS.index(day) for day in hours.days),
            _minutes(hours.start),
            _minutes(hours.end),
        )

    def __call__(self, time_us: int) -> bool:
        window = self._window
        if window is None:
            return True
        zone, days, start, end = window
        local = dt.datetime.fromtimestamp(time_us / 1_000_000, zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if start < end:
            return day in days and start <= minute < end
        # The window spans midnight: its late part belongs to the day it started on,
        # the early-morning part to the day before.
        return (day in days and minute >= start) or ((day - 1) % 7 in days and minute < end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


# ---- the kept copy --------------------------------------------------------------------


class KeptPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The last policy the agent applied, as kept in ``policy.json``."""

    group: str
    version: int
    received_us: int
    # The document exactly as the server sent it; checked again on load.
    document: str


_kept_decoder = msgspec.json.Decoder(KeptPolicy)


def load_kept_policy(state_dir: Path) -> tuple[KeptPolicy, Policy] | None:
    """The kept policy, or None when there is none or it cannot be used (unreadable,
    corrupt, or a policy this agent refuses): then it is ignored with a warning and
    the agent runs on its own settings until the server sends one."""
    path = state_dir / POLICY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring the kept policy %s: %s", path, exc)
        return None
    try:
        kept = _kept_decoder.decode(raw)
        return kept, decode_policy_document(kept.document.encode("utf-8"))
    except (msgspec.DecodeError, UnicodeDecodeError, InvalidPolicy) as exc:
        log.warning("ignoring the kept policy %s: it is corrupt: %s", path, exc)
        return None


def save_kept_policy(state_dir: Path, kept: KeptPolicy) -> None:
    """Replace ``policy.json`` atomically (write a temporary file, fsync, rename).
    Raises OSError."""
    _atomic_write(state_dir / POLICY_FILE, msgspec.json.encode(kept), mode=0o600)


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---- the notice to the PC's user ------------------------------------------------------


def notice_text(notice: NoticeMode) -> str:
    """The notice file's text: the administrator's words in English, then Japanese."""
    return (
        "Sekimori: this PC is monitored / このPCは監視されています\n\n"
        f"{notice.text_en.strip()}\n\n{notice.text_ja.strip()}\n"
    )


def read_notice(paths: list[Path]) -> str | None:
    """The first notice file of ``paths`` that can be read, or None."""
    for path in paths:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return path.read_text(encoding="utf-8")
    return None


# ---- applying -------------------------------------------------------------------------


class PolicyManager:
    """Keeps the applied policy and applies new ones (see the module docstring).

    ``settings_for(policy)`` gives the collectors' full settings under a policy (None:
    the local ones); ``notice_paths`` are where the notice is written: the state
    directory's file and, where it can be created, a world-readable one outside the
    (private) state directory.
    """

    def __init__(
        self,
        state_dir: Path,
        outbox: Outbox,
        settings_for: SettingsFor,
        *,
        notice_paths: list[Path],
    ) -> None:
        self._state_dir = state_dir
        self._outbox = outbox
        self._settings_for = settings_for
        self._notice_paths = notice_paths
        self._lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._refused: tuple[str, int, bytes] | None = None
        loaded = load_kept_policy(state_dir)
        self._kept: KeptPolicy | None = loaded[0] if loaded else None
        self._policy: Policy | None = loaded[1] if loaded else None
        self.gate = WorkingHoursGate()

    @property
    def active(self) -> Policy | None:
        """The policy in force (None: the agent's own settings)."""
        if self._kept is None or self._kept.version == 0:
            return None
        return self._policy

    @property
    def version(self) -> int | None:
        return None if self._kept is None else self._kept.version

    def initial_settings(self) -> dict[str, dict[str, Any]]:
        return self._settings_for(self.active)

    def forget(self, reason: str) -> None:
        """Stop using the kept policy (its settings were refused at start)."""
        log.warning("not applying the kept policy: %s", reason)
        self._kept = None
        self._policy = None

    def start(self, supervisor: Supervisor) -> None:
        """Attach the supervisor (built from ``initial_settings``) and put the rest of
        the kept policy in force: working hours and the notice."""
        self._supervisor = supervisor
        policy = self.active
        self.gate.set(policy.privacy.working_hours_only if policy else None)
        if self._kept is not None and policy is not None:
            self._outbox.append(
                "agent.policy_applied",
                PolicyApplication(
                    group=self._kept.group,
                    version=self._kept.version,
                    ok=True,
                    restarted=[],
                    source="stored",
                ),
            )
            self._update_notice(policy.notice_mode, self._kept.version)

    async def handle(self, update: PolicyUpdate) -> PolicyApplied:
        """``apply`` off the event loop (restarting collectors joins threads)."""
        return await asyncio.to_thread(self.apply, update.group, update.version, update.document)

    def apply(self, group: str, version: int, document: bytes) -> PolicyApplied:
        """Apply the group's policy ``version``; returns the answer for the server."""
        with self._lock:
            kept = self._kept
            if (
                kept is not None
                and (kept.group, kept.version) == (group, version)
                and kept.document.encode("utf-8") == document
            ):
                return PolicyApplied(version=version, ok=True)  # a reconnect: nothing new
            before = self.active
            previous_hours = before.privacy.working_hours_only if before else None
            try:
                policy = decode_policy_document(document)
                text = document.decode("utf-8")
                active = None if version == 0 else policy
                # The gate first: a collector restarted below may emit at once, and
                # its events must already meet the new hours.
                self.gate.set(active.privacy.working_hours_only if active else None)
                restarted = self._reconfigure(active)
            except (InvalidPolicy, CollectorConfigError) as exc:
                self.gate.set(previous_hours)  # nothing changed after all
                return self._refuse(group, version, document, str(exc))
            except UnicodeDecodeError as exc:
                return self._refuse(group, version, document, f"not UTF-8: {exc}")
            self._kept = KeptPolicy(
                group=group,
                version=version,
                received_us=now_us(),
                document=text,
            )
            self._policy = policy
            try:
                save_kept_policy(self._state_dir, self._kept)
            except OSError as exc:
                # In force now; only the next start without the server will not have it.
                log.warning("policy version %d applied but not kept: %s", version, exc)
            self._outbox.append(
                "agent.policy_applied",
                PolicyApplication(group=group, version=version, ok=True, restarted=restarted),
            )
            notice = active.notice_mode if active else NoticeMode()
            self._update_notice(notice, version)
            log.info(
                "policy %s version %d applied; restarted: %s",
                group,
                version,
                ", ".join(restarted) or "none",
            )
            return PolicyApplied(version=version, ok=True)

    def _reconfigure(self, policy: Policy | None) -> list[str]:
        if self._supervisor is None:
            raise CollectorConfigError("the agent is not running its collectors yet")
        return self._supervisor.reconfigure(self._settings_for(policy))

    def _refuse(self, group: str, version: int, document: bytes, error: str) -> PolicyApplied:
        error = error[:1000]
        if self._refused != (group, version, document):
            # Once per document: the server sends it again on every reconnect.
            self._refused = (group, version, document)
            log.warning("policy %s version %d refused: %s", group, version, error)
            self._outbox.append(
                "agent.policy_applied",
                PolicyApplication(
                    group=group, version=version, ok=False, restarted=[], error=error
                ),
            )
        return PolicyApplied(version=version, ok=False, error=error)

    def _update_notice(self, notice: NoticeMode, version: int) -> None:
        """Write (or withdraw) the notice files; record an event when it changed."""
        text = notice_text(notice) if notice.enabled else None
        before = read_notice(self._notice_paths)
        written: list[str] = []
        for path in self._notice_paths:
            try:
                if text is None:
                    path.unlink(missing_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                # World-readable on purpose: the PC's user is meant to read it.
                _atomic_write(path, text.encode("utf-8"), mode=0o644)
                written.append(str(path))
            except OSError as exc:
                log.info("notice not written to %s: %s", path, exc)
        if before == text:
            return
        self._outbox.append(
            "agent.notice_updated",
            NoticeUpdated(
                version=version,
                enabled=text is not None,
                text_en=notice.text_en if text else "",
                text_ja=notice.text_ja if text else "",
                paths=written,
            ),
        )
