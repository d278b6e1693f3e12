"""The inventory collector: the machine, and the software installed on it.

At start and then every ``full_interval_seconds`` it sends ``inventory.hardware`` and
the full ``inventory.software`` list. Every ``interval_seconds`` it checks cheaply
whether a package manager's database changed (file times only: the dpkg database is
re-read only when its status file or journal changed) and, if so, sends one event per
change: ``inventory.software_installed`` / ``_removed`` / ``_upgraded`` /
``_downgraded``.

The last known package list is the collector's cursor, saved atomically with the
events that move it. After an agent restart the first list is compared with the
cursor, so a package installed while the agent was down is reported once, as
installed, and nothing else is re-sent as a change. The first time a manager is seen
(no cursor yet, or a manager newly enabled) its list is taken as the baseline: it
appears in the snapshot but is not reported as "installed".

A manager that cannot be read (``snap list`` fails, say) never makes its packages look
removed: its last known list is kept, and the reason travels in the snapshot's
``errors`` and the agent log. The language ecosystems (pypi, npm) are read from many
small metadata files: one broken file leaves out that one package, listed in the
snapshot's ``errors`` as "skipped" (at most ``_MAX_SKIPPED_REPORTED`` per manager).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import socket
import threading
import time
from collections.abc import Iterable

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.current import PLATFORM
from sekimori.agent.platform.linux import hardware
from sekimori.agent.platform.linux.language_packages import (
    NpmSource,
    PypiSource,
    compare_npm_versions,
    compare_pypi_versions,
)
from sekimori.agent.platform.linux.software import (
    SOURCES,
    Signature,
    SoftwareReadError,
    SoftwareSource,
    compare_dpkg_versions,
    compare_rpm_versions,
)
from sekimori.protocol.events.inventory import (
    Hardware,
    Manager,
    Package,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareSnapshot,
    SoftwareUpgraded,
)

__all__ = ["InventoryCollector", "InventorySettings"]

log = logging.getLogger(__name__)

_ALL_MANAGERS: list[Manager] = ["dpkg", "rpm", "snap", "flatpak", "pypi", "npm"]

# Managers whose versions have a defined order; the others' changes count as upgrades.
# pypi and npm order only versions that follow PEP 440 / SemVer (ValueError otherwise).
_VERSION_ORDER = {
    "dpkg": compare_dpkg_versions,
    "rpm": compare_rpm_versions,
    "pypi": compare_pypi_versions,
    "npm": compare_npm_versions,
}

# A tree of broken metadata must not make every snapshot huge.
_MAX_SKIPPED_REPORTED = 20


class InventorySettings(CollectorSettings, forbid_unknown_fields=True, kw_only=True):
    # How often to look (cheaply) for software changes.
    interval_seconds: float = 60.0
    # How often to send the full hardware and software inventory again.
    full_interval_seconds: float = 86400.0
    # Which package managers to read (each only where present on the PC).
    managers: list[Manager] = msgspec.field(default_factory=lambda: list(_ALL_MANAGERS))
    # Package names (shell patterns, e.g. "linux-image-*") left out of every event.
    exclude_packages: list[str] = msgspec.field(default_factory=list)
    # Time allowed to `rpm -qa`, `snap list`, `flatpak list`.
    command_timeout_seconds: float = 120.0
    # Python site-packages directories read besides the system's (shell patterns, e.g.
    # "/opt/*/venv/lib/python3.*/site-packages"). Local only: not set by policy.
    pypi_paths: list[str] = msgspec.field(default_factory=list)
    # node_modules directories read besides the global ones (shell patterns).
    npm_paths: list[str] = msgspec.field(default_factory=list)


class _Cursor(msgspec.Struct, forbid_unknown_fields=True):
    """What the collector last reported: its saved state across restarts."""

    version: int
    # Managers whose list has been taken as a baseline (changes after it are events).
    baselined: list[Manager]
    packages: list[Package]


_CURSOR_VERSION = 1
_cursor_decoder = msgspec.msgpack.Decoder(_Cursor)
_encoder = msgspec.msgpack.Encoder()

_Key = tuple[str, str]  # (name, architecture)


def _group(packages: Iterable[Package]) -> dict[_Key, dict[str, Package]]:
    """Packages by (name, architecture), then by version.

    rpm may hold several versions of one package at once (kernels), so a key maps to
    a set of versions rather than to one.
    """
    out: dict[_Key, dict[str, Package]] = {}
    for p in packages:
        out.setdefault((p.name, p.architecture), {})[p.version] = p
    return out


class InventoryCollector(Collector):
    name = "inventory"
    settings_type = InventorySettings

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        super().__init__(settings, sink)
        if not isinstance(settings, InventorySettings):
            raise CollectorError("inventory: settings are not InventorySettings", permanent=True)
        if settings.interval_seconds <= 0 or settings.command_timeout_seconds <= 0:
            raise CollectorError(
                "inventory: interval_seconds and command_timeout_seconds must be > 0",
                permanent=True,
            )
        if settings.full_interval_seconds < settings.interval_seconds:
            raise CollectorError(
                "inventory: full_interval_seconds must be >= interval_seconds", permanent=True
            )
        relative = [p for p in (*settings.pypi_paths, *settings.npm_paths) if not p.startswith("/")]
        if relative:
            # Relative to the agent's working directory would mean nothing useful.
            raise CollectorError(
                f"inventory: pypi_paths and npm_paths must be absolute: {relative}",
                permanent=True,
            )
        self.conf = settings
        self._excluded = (
            re.compile("|".join(fnmatch.translate(p) for p in settings.exclude_packages))
            if settings.exclude_packages
            else None
        )
        self._sources: dict[Manager, SoftwareSource] = {
            m: _source(m, settings) for m in dict.fromkeys(settings.managers)
        }
        self._signatures: dict[Manager, Signature | None] = {}
        self._reported_errors: dict[Manager, str] = {}
        # Entries the last successful read of each manager left out ("path: why").
        self._skipped: dict[Manager, list[str]] = {}
        self._known: dict[Manager, list[Package]] = {}
        self._baselined: set[Manager] = set()
        # The known lists moved since the cursor was last saved.
        self._cursor_stale = False

    # ---- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        if PLATFORM != "linux":  # pragma: no cover - other backends are planned
            raise CollectorError(f"inventory: no backend for {PLATFORM}", permanent=True)
        self._load_cursor()
        next_full = time.monotonic()
        while not stop.is_set():
            full = time.monotonic() >= next_full
            if full:
                next_full = time.monotonic() + self.conf.full_interval_seconds
            self._round(full=full, stop=stop)
            stop.wait(min(self.conf.interval_seconds, max(0.0, next_full - time.monotonic())))

    def _round(self, *, full: bool, stop: threading.Event) -> None:
        machine = self._read_hardware() if full else None
        read, errors = self._read_software(force=full, stop=stop)
        if stop.is_set():
            return  # a stop may have cut a read short: report nothing half-done
        changes = [e for m, packages in read.items() for e in self._apply(m, packages)]
        events: list[PendingEvent] = []
        if machine is not None:
            events.append(PendingEvent("inventory.hardware", machine))
        events.extend(changes)
        if full:
            events.append(PendingEvent("inventory.software", self._snapshot(errors)))
        if events or self._cursor_stale:
            self.sink.emit_many(events, cursor=self._encode_cursor())
            self._cursor_stale = False

    # ---- reading -------------------------------------------------------------------

    def _read_hardware(self) -> Hardware:
        memory, swap = hardware.read_memory()
        return Hardware(
            hostname=socket.gethostname(),
            cpu=hardware.read_cpu(),
            memory_bytes=memory,
            swap_bytes=swap,
            disks=hardware.read_disks(),
            interfaces=hardware.read_network_interfaces(),
            dmi=hardware.read_dmi(),
            os=hardware.read_os_release(),
            kernel=hardware.read_kernel(),
            virtual_machine=hardware.is_virtual_machine(),
        )

    def _read_software(
        self, *, force: bool, stop: threading.Event
    ) -> tuple[dict[Manager, list[Package]], dict[Manager, str]]:
        """Lists of the managers that (may have) changed, and the errors of this round.

        ``force`` reads every manager; otherwise only those whose signature moved.
        A manager absent from the PC has an empty list.
        """
        read: dict[Manager, list[Package]] = {}
        errors: dict[Manager, str] = {}
        for manager, source in self._sources.items():
            if stop.is_set():
                break
            if not source.present():
                if force or self._known.get(manager):
                    read[manager] = []
                self._skipped.pop(manager, None)
                continue
            signature = source.signature()
            unchanged = signature is None or signature == self._signatures.get(manager)
            if not force and unchanged:
                continue
            try:
                read[manager] = source.read(stop)
            except SoftwareReadError as exc:
                # Not recording the signature makes the next round try again.
                errors[manager] = str(exc)
                if self._reported_errors.get(manager) != str(exc):
                    log.warning("inventory: %s", exc)
                    self._reported_errors[manager] = str(exc)
                continue
            self._signatures[manager] = signature
            self._reported_errors.pop(manager, None)
            self._note_skipped(manager, source.skipped)
        return read, errors

    def _note_skipped(self, manager: Manager, skipped: list[str]) -> None:
        if skipped and skipped != self._skipped.get(manager):
            log.warning(
                "inventory: %s: %d entries skipped, e.g. %s", manager, len(skipped), skipped[0]
            )
        self._skipped[manager] = list(skipped)

    # ---- diffing -------------------------------------------------------------------

    def _apply(self, manager: Manager, packages: list[Package]) -> list[PendingEvent]:
        """Adopt ``packages`` as the manager's list; the change events it implies."""
        old = self._known.get(manager, [])
        if manager not in self._baselined:
            self._known[manager] = packages
            self._baselined.add(manager)
            self._cursor_stale = True
            return []
        if old == packages:
            return []
        self._known[manager] = packages
        self._cursor_stale = True
        before, after = _group(old), _group(packages)
        events: list[PendingEvent] = []
        for key in sorted(before.keys() | after.keys()):
            was, now = before.get(key, {}), after.get(key, {})
            if was.keys() == now.keys() or self._is_excluded(key[0]):
                continue
            added = [now[v] for v in now if v not in was]
            gone = [was[v] for v in was if v not in now]
            if len(added) == 1 and len(gone) == 1:
                events.append(self._version_change(gone[0], added[0]))
                continue
            events += [PendingEvent("inventory.software_installed", _installed(p)) for p in added]
            events += [PendingEvent("inventory.software_removed", _removed(p)) for p in gone]
        return events

    def _version_change(self, old: Package, new: Package) -> PendingEvent:
        compare = _VERSION_ORDER.get(old.manager)
        try:
            down = compare is not None and compare(new.version, old.version) < 0
        except ValueError:
            down = False  # a version outside PEP 440 / SemVer: no order, an upgrade
        kind, payload_type = (
            ("inventory.software_downgraded", SoftwareDowngraded)
            if down
            else ("inventory.software_upgraded", SoftwareUpgraded)
        )
        payload = payload_type(
            manager=new.manager,
            name=new.name,
            architecture=new.architecture,
            from_version=old.version,
            to_version=new.version,
            source=new.source,
            source_version=new.source_version,
        )
        return PendingEvent(kind, payload)

    def _is_excluded(self, name: str) -> bool:
        return self._excluded is not None and self._excluded.fullmatch(name) is not None

    def _snapshot(self, errors: dict[Manager, str]) -> SoftwareSnapshot:
        managers = [m for m, s in self._sources.items() if s.present() or m in errors]
        packages = [
            p
            for m in self._sources
            for p in self._known.get(m, [])
            if not self._is_excluded(p.name)
        ]
        problems = [f"{m}: {msg}" for m, msg in errors.items()]
        for m, skipped in self._skipped.items():
            if m in errors:
                continue  # this round's read failed; its skips are from an older read
            problems += [f"{m}: skipped {s}" for s in skipped[:_MAX_SKIPPED_REPORTED]]
            if len(skipped) > _MAX_SKIPPED_REPORTED:
                more = len(skipped) - _MAX_SKIPPED_REPORTED
                problems.append(f"{m}: skipped {more} more entries")
        return SoftwareSnapshot(packages=packages, managers=managers, errors=problems)

    # ---- cursor --------------------------------------------------------------------

    def _load_cursor(self) -> None:
        raw = self.sink.cursor()
        if raw is None:
            return
        try:
            cursor = _cursor_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            # Crashing here would crash on every restart; start a new baseline instead.
            log.warning("inventory: unreadable cursor, starting a new baseline: %s", exc)
            return
        if cursor.version != _CURSOR_VERSION:
            log.warning("inventory: cursor version %d unknown, new baseline", cursor.version)
            return
        self._baselined = set(cursor.baselined)
        for p in cursor.packages:
            self._known.setdefault(p.manager, []).append(p)

    def _encode_cursor(self) -> bytes:
        packages = [p for m in sorted(self._known) for p in self._known[m]]
        return _encoder.encode(_Cursor(_CURSOR_VERSION, sorted(self._baselined), packages))


def _source(manager: Manager, settings: InventorySettings) -> SoftwareSource:
    """The reader of one manager, with the settings that concern it."""
    timeout = settings.command_timeout_seconds
    if manager == "pypi":
        return PypiSource(timeout=timeout, extra_roots=settings.pypi_paths)
    if manager == "npm":
        return NpmSource(timeout=timeout, extra_roots=settings.npm_paths)
    return SOURCES[manager](timeout=timeout)


def _installed(p: Package) -> SoftwareInstalled:
    return SoftwareInstalled(
        manager=p.manager,
        name=p.name,
        architecture=p.architecture,
        version=p.version,
        source=p.source,
        source_version=p.source_version,
    )


def _removed(p: Package) -> SoftwareRemoved:
    return SoftwareRemoved(
        manager=p.manager,
        name=p.name,
        architecture=p.architecture,
        version=p.version,
        source=p.source,
        source_version=p.source_version,
    )
