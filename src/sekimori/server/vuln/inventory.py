"""Keeping ``device_packages`` current from a device's inventory events.

Payloads are read with structs of their own rather than the protocol's: a manager
name the protocol adds later (``pypi`` and ``npm`` arrived after the first agents)
must not make a stored event unreadable here — an unknown manager is simply not
matched. A payload that does not decode is skipped (ingest validated it; this only
guards against rows written by something else).
"""

from __future__ import annotations

import logging

import msgspec
import sqlalchemy as sa

from sekimori.server.store.vuln_matching import (
    DeviceState,
    PackageRow,
    baseline,
    delete_package,
    device_state,
    inventory_events,
    replace_packages,
    save_device_state,
    set_device_release,
    upsert_package,
)
from sekimori.server.vuln.packages import match_key, release_ecosystem

__all__ = ["apply_device_inventory"]

log = logging.getLogger(__name__)


class _Package(msgspec.Struct, array_like=True):
    manager: str
    name: str
    version: str
    architecture: str
    source: str
    source_version: str


class _Snapshot(msgspec.Struct):
    packages: list[_Package]


class _Change(msgspec.Struct):
    manager: str
    name: str
    architecture: str
    version: str
    source: str
    source_version: str


class _VersionChange(msgspec.Struct):
    manager: str
    name: str
    architecture: str
    to_version: str
    source: str
    source_version: str


class _Os(msgspec.Struct):
    id: str
    version_id: str
    codename: str = ""


class _Hardware(msgspec.Struct):
    os: _Os


_SNAPSHOT = msgspec.json.Decoder(_Snapshot)
_CHANGE = msgspec.json.Decoder(_Change)
_VERSION_CHANGE = msgspec.json.Decoder(_VersionChange)
_HARDWARE = msgspec.json.Decoder(_Hardware)


def _row(item: _Package | _Change | _VersionChange, release: str) -> PackageRow:
    version = item.to_version if isinstance(item, _VersionChange) else item.version
    key = match_key(
        item.manager,
        item.name,
        version=version,
        source=item.source,
        source_version=item.source_version,
        release=release,
    )
    return PackageRow(
        item.manager, item.name, item.architecture, version, item.source, item.source_version, key
    )


def _apply_hardware(conn: sa.Connection, state: DeviceState, payload: str) -> DeviceState:
    try:
        hardware = _HARDWARE.decode(payload)
    except msgspec.MsgspecError:
        log.warning("device %s: unreadable inventory.hardware payload skipped", state.device_id)
        return state
    release = release_ecosystem(hardware.os.id, hardware.os.version_id)
    if release != state.release_ecosystem:
        set_device_release(conn, state.device_id, release)
    return DeviceState(
        state.device_id,
        hardware.os.id,
        hardware.os.version_id,
        hardware.os.codename,
        release,
        state.applied_seq,
    )


def _apply_software(conn: sa.Connection, state: DeviceState, kind: str, payload: str) -> None:
    release = state.release_ecosystem
    try:
        if kind == "inventory.software":
            snapshot = _SNAPSHOT.decode(payload)
            replace_packages(
                conn,
                state.device_id,
                [_row(p, release) for p in snapshot.packages],
            )
        elif kind in ("inventory.software_installed",):
            c = _CHANGE.decode(payload)
            upsert_package(
                conn,
                state.device_id,
                _row(c, release),
            )
        elif kind == "inventory.software_removed":
            c = _CHANGE.decode(payload)
            delete_package(conn, state.device_id, c.manager, c.name, c.architecture)
        else:  # upgraded / downgraded
            v = _VERSION_CHANGE.decode(payload)
            upsert_package(
                conn,
                state.device_id,
                _row(v, release),
            )
    except msgspec.MsgspecError:
        log.warning("device %s: unreadable %s payload skipped", state.device_id, kind)


def apply_device_inventory(
    conn: sa.Connection, device_id: str, through_seq: int, *, now_us: int
) -> bool:
    """Apply the device's inventory events up to ``through_seq`` (its acked_seq read
    before): returns True when its packages or release changed."""
    state = device_state(conn, device_id)
    changed = False
    if state is None:
        state = DeviceState(device_id, "", "", "", "", 0)
        snapshot_seq, hardware = baseline(conn, device_id)
        if hardware is not None:
            state = _apply_hardware(conn, state, hardware)
        after = max(snapshot_seq - 1, 0)
        todo = inventory_events(conn, device_id, after, through_seq, software_only=True)
        changed = bool(todo) or bool(state.release_ecosystem)
    else:
        todo = inventory_events(conn, device_id, state.applied_seq, through_seq)
        changed = bool(todo)
    for _seq, kind, payload in todo:
        if kind == "inventory.hardware":
            state = _apply_hardware(conn, state, payload)
        else:
            _apply_software(conn, state, kind, payload)
    save_device_state(
        conn,
        DeviceState(
            state.device_id,
            state.os_id,
            state.os_version_id,
            state.os_codename,
            state.release_ecosystem,
            max(through_seq, state.applied_seq),
        ),
        now_us=now_us,
    )
    return changed
