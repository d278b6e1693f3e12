"""Browser profiles of local users and the visits in their history databases.

Where the histories are (relative to each home folder):

* Chromium family: ``<user data dir>/<profile>/History`` for profiles ``Default`` and
  ``Profile N``; user data dirs ``~/.config/chromium``, ``~/.config/google-chrome``,
  ``~/.config/microsoft-edge``, ``~/.config/BraveSoftware/Brave-Browser`` (plus their
  beta/dev channels and snap/flatpak homes). Visit times are microseconds since
  1601-01-01 UTC.
* Firefox: ``<profile>/places.sqlite`` under ``~/.mozilla/firefox`` (or the XDG,
  snap and flatpak equivalents), profiles listed in ``profiles.ini`` or found by
  globbing. Visit times are microseconds since the Unix epoch.

How a history is read while the browser runs (measured with Debian Chromium 156):
the browser holds an exclusive SQLite lock, so an ordinary read-only open fails with
"database is locked". Chromium's History uses a rollback journal: between commits
(every ~10 s) the main file holds exactly the committed database, so it is opened
in place with ``mode=ro&immutable=1`` (no lock taken; ~0.6 ms for an 85 MB file).
When a sidecar has content (``-wal``: Firefox's places.sqlite, whose recent visits
live only in the WAL, which ``immutable=1`` ignores; ``-journal``: a write in
progress whose pages may already be in the main file) the main file and its sidecar
are copied to a private temporary folder and SQLite recovers the copy (applies the
WAL, or rolls the half-written transaction back): a consistent snapshot at the cost
of the copy (~50 ms of CPU for the same 85 MB file, hence not the default).
Either way the files' identity, size and mtime are compared before and after the
read; if they moved, the read is discarded and retried later (``HistoryUnreadable``).

Paths come from folders the user controls and the agent runs as root, so a history
file must be a regular file (not a symlink) owned by the home's owner or root: a
user cannot make the agent read, and attribute to them, someone else's history.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from sekimori.agent.platform.linux.localusers import local_users, user_name
from sekimori.protocol.events.web import Browser, Transition

__all__ = [
    "CHROMIUM_EPOCH_OFFSET_US",
    "FileState",
    "HistoryFile",
    "HistoryRead",
    "HistoryUnreadable",
    "Home",
    "Visit",
    "chromium_time_to_unix_us",
    "find_history_files",
    "history_state",
    "homes_at",
    "local_homes",
    "read_history",
    "unix_us_to_chromium_time",
]

CHROMIUM_EPOCH_OFFSET_US: Final = 11_644_473_600_000_000
"""Microseconds from 1601-01-01 to 1970-01-01 (UTC): 369 years, 89 of them leap."""

_NO_ID: Final = (1 << 63) - 1  # "id > this" matches nothing: read by time alone

_CHROMIUM_DATA_DIRS: Final[dict[Browser, tuple[str, ...]]] = {
    "chromium": (
        ".config/chromium",
        "snap/chromium/common/chromium",
        ".var/app/org.chromium.Chromium/config/chromium",
    ),
    "chrome": (
        ".config/google-chrome",
        ".config/google-chrome-beta",
        ".config/google-chrome-unstable",
        ".var/app/com.google.Chrome/config/google-chrome",
    ),
    "edge": (
        ".config/microsoft-edge",
        ".config/microsoft-edge-beta",
        ".config/microsoft-edge-dev",
        ".var/app/com.microsoft.Edge/config/microsoft-edge",
    ),
    "brave": (
        ".config/BraveSoftware/Brave-Browser",
        ".config/BraveSoftware/Brave-Browser-Beta",
        ".config/BraveSoftware/Brave-Browser-Nightly",
        "snap/brave/current/.config/BraveSoftware/Brave-Browser",
        ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser",
    ),
}
_FIREFOX_DIRS: Final = (
    ".mozilla/firefox",
    ".config/mozilla/firefox",
    "snap/firefox/common/.mozilla/firefox",
    ".var/app/org.mozilla.firefox/.mozilla/firefox",
)

# Chromium's core page transition (the low byte of visits.transition).
_CHROMIUM_TRANSITIONS: Final[dict[int, Transition]] = {
    0: "link",
    1: "typed",
    2: "bookmark",
    3: "subframe",
    4: "subframe",
    5: "generated",
    6: "toplevel",
    7: "form_submit",
    8: "reload",
    9: "keyword",
    10: "keyword",
}
# Firefox's moz_historyvisits.visit_type (nsINavHistoryService TRANSITION_*).
_FIREFOX_TRANSITIONS: Final[dict[int, Transition]] = {
    1: "link",
    2: "typed",
    3: "bookmark",
    4: "subframe",
    5: "redirect",
    6: "redirect",
    7: "download",
    8: "subframe",
    9: "reload",
}


def chromium_time_to_unix_us(value: int) -> int:
    """Chromium's microseconds since 1601-01-01 UTC → microseconds since 1970 UTC."""
    return value - CHROMIUM_EPOCH_OFFSET_US


def unix_us_to_chromium_time(value: int) -> int:
    return value + CHROMIUM_EPOCH_OFFSET_US


# ---- where the histories are ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Home:
    """A home folder and its owner (the OS user its browsing is attributed to)."""

    path: Path
    uid: int
    user: str


@dataclass(frozen=True, slots=True)
class HistoryFile:
    path: Path
    engine: Literal["chromium", "firefox"]
    browser: Browser
    profile: str
    home: Home


def local_homes(
    home_roots: Iterable[str | Path] = ("/home",),
    *,
    accounts_file: str | Path = "/etc/passwd",
    login_defs: str | Path = "/etc/login.defs",
) -> list[Home]:
    """Home folders of local human accounts and root, plus every folder in ``home_roots``.

    Each home is attributed to the owner of the folder (not to the passwd entry that
    names it), deduplicated by real path. Missing or unreadable entries are skipped.
    """
    candidates: list[Path] = []
    with contextlib.suppress(OSError):
        candidates.extend(Path(user.home) for user in local_users(accounts_file, login_defs))
    with contextlib.suppress(KeyError):
        candidates.append(Path(pwd.getpwuid(0).pw_dir))
    for root in home_roots:
        with contextlib.suppress(OSError), os.scandir(root) as entries:
            candidates.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    return homes_at(candidates)


def homes_at(paths: Iterable[str | Path]) -> list[Home]:
    """``Home`` records for these folders (missing ones skipped, duplicates merged)."""
    homes: dict[str, Home] = {}
    for candidate in paths:
        try:
            real = os.path.realpath(candidate)
            info = os.stat(real)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and real not in homes:
            homes[real] = Home(Path(real), info.st_uid, user_name(info.st_uid))
    return list(homes.values())


def find_history_files(homes: Iterable[Home], browsers: Iterable[str]) -> list[HistoryFile]:
    """Every history database of the given browsers in the given homes.

    Costs a few ``scandir``/``lstat`` calls per home: cheap enough for every tick.
    """
    wanted = set(browsers)
    found: list[HistoryFile] = []
    for home in homes:
        for browser, data_dirs in _CHROMIUM_DATA_DIRS.items():
            if browser in wanted:
                for data_dir in data_dirs:
                    found.extend(_chromium_profiles(home, home.path / data_dir, browser))
        if "firefox" in wanted:
            for firefox_dir in _FIREFOX_DIRS:
                found.extend(_firefox_profiles(home, home.path / firefox_dir))
    return found


def _chromium_profiles(home: Home, data_dir: Path, browser: Browser) -> Iterator[HistoryFile]:
    try:
        with os.scandir(data_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return
    for name in names:
        # "Guest Profile" and "System Profile" keep no lasting history of their own.
        if name == "Default" or (name.startswith("Profile ") and name[8:].isdigit()):
            path = data_dir / name / "History"
            if _trusted_file(path, home):
                yield HistoryFile(path, "chromium", browser, name, home)


def _firefox_profiles(home: Home, root: Path) -> Iterator[HistoryFile]:
    if not root.is_dir():
        return
    dirs: set[Path] = set()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    with contextlib.suppress(OSError, configparser.Error):
        parser.read(root / "profiles.ini", encoding="utf-8")
    for section in parser.sections():
        if section.startswith("Profile") and parser.has_option(section, "Path"):
            relative = parser.get(section, "IsRelative", fallback="1").strip() != "0"
            raw = parser.get(section, "Path")
            dirs.add(root / raw if relative else Path(raw))
    # Profiles made with -profile or by hand are not always in profiles.ini.
    with contextlib.suppress(OSError):
        dirs.update(p.parent for p in root.glob("*/places.sqlite"))
    for profile_dir in sorted(dirs):
        path = profile_dir / "places.sqlite"
        if _trusted_file(path, home):
            label = profile_dir.name if profile_dir.parent == root else str(profile_dir)
            yield HistoryFile(path, "firefox", "firefox", label, home)


def _trusted_file(path: Path, home: Home) -> bool:
    """A regular file owned by the home's owner, or by root if it really lies in that
    home. A symlinked folder (~/.config/chromium -> /root/...) or an absolute Firefox
    profile path must not make the agent report another account's history as this
    user's; a profile the user keeps outside the home (their own file) still counts."""
    try:
        info = os.lstat(path)
        real_home = os.path.realpath(home.path)
        real = os.path.realpath(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_uid == home.uid:
        return True
    return info.st_uid == 0 and os.path.commonpath([real, real_home]) == real_home


# Bounds on what a user-controlled history file can make the agent do.
MAX_HISTORY_BYTES: Final = 2 * 1024 * 1024 * 1024
MAX_QUERY_SECONDS: Final = 20.0


# ---- reading a history ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileState:
    """What identifies a history's committed content on disk: equal states, equal data.

    The rollback journal is not compared: it changes while the browser gathers an
    uncommitted transaction, which nobody can read yet; committed data shows in the
    main file or the WAL. It only decides whether a read must go through a copy.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int
    wal: tuple[int, int]  # (size, mtime_ns) of -wal, (0, 0) when absent
    journal: tuple[int, int] = field(compare=False)  # likewise for -journal

    @property
    def has_sidecar_data(self) -> bool:
        return self.wal[0] > 0 or self.journal[0] > 0


@dataclass(frozen=True, slots=True)
class Visit:
    visit_id: int
    url: str
    title: str
    time_us: int  # Unix epoch, UTC
    transition: Transition


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """The new visits of one read, and the snapshot's high-water marks.

    ``max_id`` / ``max_time_us`` cover every visit in the snapshot, reported or not
    (filtered sync/import rows included), so the next read can start after them.
    """

    visits: list[Visit]
    max_id: int
    max_time_us: int
    state: FileState


class HistoryUnreadable(Exception):
    """This history cannot be read now; a later read may succeed.

    ``transient``: the file moved under the read (the browser wrote or replaced it),
    the normal life of a busy history; otherwise it is unreadable as it stands
    (corrupt, not a history, an unknown schema) and someone may need to know.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def history_state(path: Path) -> FileState | None:
    """The on-disk state of a history and its sidecars, or None if it is not there."""
    try:
        main = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(main.st_mode):
        return None
    return FileState(
        main.st_dev,
        main.st_ino,
        main.st_size,
        main.st_mtime_ns,
        _sidecar(path, "-wal"),
        _sidecar(path, "-journal"),
    )


def _sidecar(path: Path, suffix: str) -> tuple[int, int]:
    try:
        info = os.lstat(f"{path}{suffix}")
    except OSError:
        return (0, 0)
    return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else (0, 0)


def read_history(history: HistoryFile, *, after_id: int | None, after_time_us: int) -> HistoryRead:
    """Visits with id > ``after_id`` or time > ``after_time_us``, in id order.

    ``after_id=None`` reads by time alone (a history seen for the first time, or a
    file that replaced the one the ids were counted in). Raises HistoryUnreadable.
    """
    before = history_state(history.path)
    if before is None:
        raise HistoryUnreadable(f"{history.path}: no longer a regular file", transient=True)
    try:
        with _snapshot(history.path, copy=before.has_sidecar_data) as db:
            if history.engine == "chromium":
                read = _read_chromium(db, after_id, after_time_us)
            else:
                read = _read_firefox(db, after_id, after_time_us)
    except (sqlite3.Error, OSError) as exc:
        # A torn read of a file being written fails like a corrupt one: tell them apart.
        moved = history_state(history.path) != before
        raise HistoryUnreadable(f"{history.path}: {exc}", transient=moved) from None
    if history_state(history.path) != before:
        raise HistoryUnreadable(f"{history.path}: changed while being read", transient=True)
    visits, max_id, max_time_us = read
    return HistoryRead(visits, max_id, max_time_us, before)


def _bound_query_time(db: sqlite3.Connection) -> None:
    """Abort any statement running past MAX_QUERY_SECONDS: the file is written by the
    user, who could make ``visits`` a view over an endless recursive query."""
    deadline = time.monotonic() + MAX_QUERY_SECONDS
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


@contextlib.contextmanager
def _snapshot(path: Path, *, copy: bool) -> Iterator[sqlite3.Connection]:
    if not copy:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
        _bound_query_time(db)
        try:
            yield db
        finally:
            db.close()
        return
    # The copy holds a user's browsing: a private folder (0700) that is always removed.
    with tempfile.TemporaryDirectory(prefix="sekimori-web-") as tmp:
        target = Path(tmp) / "history.sqlite"
        _copy_regular_file(path, target)
        for suffix in ("-wal", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                _copy_regular_file(Path(f"{path}{suffix}"), Path(f"{target}{suffix}"))
        # Opened read-write: SQLite must be able to apply the WAL or roll back the
        # hot journal of the copy (never of the original).
        db = sqlite3.connect(target)
        _bound_query_time(db)
        try:
            yield db
        finally:
            db.close()


def _copy_regular_file(source: Path, target: Path) -> None:
    # O_NOFOLLOW | O_NONBLOCK and the fstat check: a user who swaps the file for a
    # symlink or a FIFO gets an error, not a root read of another file or a hang.
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as src:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{source} is not a regular file")
        if info.st_size > MAX_HISTORY_BYTES:
            # A user could otherwise fill the agent's temporary folder.
            raise OSError(f"{source} is larger than {MAX_HISTORY_BYTES} bytes")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


# The queries are constants (no SQL is built from data). New visits are found by two
# index searches (rowid range, time index) joined by UNION: SQLite plans the plain
# "id > ? OR time > ?" as a full scan (20 ms on 300k visits instead of 0.1 ms).
# Only visits browsed on this PC are read: not synced from another device (a foreign
# visit carries its originator's cache GUID), not imported from another browser
# (visit_source 0 = synced, 3/4/5 = imported from Firefox/IE/Safari).
_CHROMIUM_VISITS: Final = """
SELECT v.id, u.url, u.title, v.visit_time, v.transition
FROM visits v JOIN urls u ON u.id = v.url
WHERE v.id IN (SELECT id FROM visits WHERE id > ?1
               UNION SELECT id FROM visits WHERE visit_time > ?2)
  AND coalesce(v.originator_cache_guid, '') = ''
  AND NOT EXISTS (SELECT 1 FROM visit_source s WHERE s.id = v.id AND s.source IN (0, 3, 4, 5))
ORDER BY v.id
"""
# Chromium before 2022 (no sync metadata in visits) did not keep foreign visits there.
_CHROMIUM_VISITS_OLD: Final = """
SELECT v.id, u.url, u.title, v.visit_time, v.transition
FROM visits v JOIN urls u ON u.id = v.url
WHERE v.id IN (SELECT id FROM visits WHERE id > ?1
               UNION SELECT id FROM visits WHERE visit_time > ?2)
  AND NOT EXISTS (SELECT 1 FROM visit_source s WHERE s.id = v.id AND s.source IN (0, 3, 4, 5))
ORDER BY v.id
"""
# Two statements each: SQLite's min/max shortcut works for one aggregate at a time.
_CHROMIUM_MAX_ID: Final = "SELECT max(id) FROM visits"
_CHROMIUM_MAX_TIME: Final = "SELECT max(visit_time) FROM visits"

_FIREFOX_VISITS: Final = """
SELECT v.id, p.url, p.title, v.visit_date, v.visit_type
FROM moz_historyvisits v JOIN moz_places p ON p.id = v.place_id
WHERE v.id IN (SELECT id FROM moz_historyvisits WHERE id > ?1
               UNION SELECT id FROM moz_historyvisits WHERE visit_date > ?2)
ORDER BY v.id
"""
_FIREFOX_MAX_ID: Final = "SELECT max(id) FROM moz_historyvisits"
_FIREFOX_MAX_TIME: Final = "SELECT max(visit_date) FROM moz_historyvisits"


def _scalar(db: sqlite3.Connection, query: str) -> int:
    value = db.execute(query).fetchone()[0]
    return int(value or 0)


def _read_chromium(
    db: sqlite3.Connection, after_id: int | None, after_time_us: int
) -> tuple[list[Visit], int, int]:
    params = (_NO_ID if after_id is None else after_id, unix_us_to_chromium_time(after_time_us))
    columns = {row[1] for row in db.execute("PRAGMA table_info(visits)")}
    query = _CHROMIUM_VISITS if "originator_cache_guid" in columns else _CHROMIUM_VISITS_OLD
    visits = [
        Visit(
            visit_id=int(vid),
            url=str(url or ""),
            title=str(title or ""),
            time_us=chromium_time_to_unix_us(int(when)),
            transition=_CHROMIUM_TRANSITIONS.get(int(transition) & 0xFF, "other"),
        )
        for vid, url, title, when, transition in db.execute(query, params)
    ]
    max_time = _scalar(db, _CHROMIUM_MAX_TIME)
    return (
        visits,
        _scalar(db, _CHROMIUM_MAX_ID),
        chromium_time_to_unix_us(max_time) if max_time else 0,
    )


def _read_firefox(
    db: sqlite3.Connection, after_id: int | None, after_time_us: int
) -> tuple[list[Visit], int, int]:
    params = (_NO_ID if after_id is None else after_id, after_time_us)
    visits = [
        Visit(
            visit_id=int(vid),
            url=str(url or ""),
            title=str(title or ""),
            time_us=int(when or 0),
            transition=_FIREFOX_TRANSITIONS.get(int(visit_type or 0), "other"),
        )
        for vid, url, title, when, visit_type in db.execute(_FIREFOX_VISITS, params)
    ]
    return visits, _scalar(db, _FIREFOX_MAX_ID), _scalar(db, _FIREFOX_MAX_TIME)
