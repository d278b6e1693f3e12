"""The file-operation collector: create, write, delete and move under watched paths.

What it watches: ``paths`` (default: the home folder of every local user) and every
removable medium while it is mounted (re-read from the mount table each
``interval_seconds``), plus ``removable_paths`` (paths to treat as removable media).
Notifications come from inotify (no polling); excluded subtrees are not even watched.

What it reports:
* ``file.created`` / ``file.modified`` — held back until the file has been quiet for
  ``coalesce_seconds`` (or at most ``_MAX_HOLD_FACTOR`` times that), so writing a
  big file is one event with its final size, not thousands. A file created and then
  written within the window is one ``file.created``.
* ``file.deleted``, ``file.moved`` (src → dest) — at once.
* ``file.copied_to_removable`` — in addition, for every file created or written on a
  removable medium: the data-leak signal.

Exclusions are globs matched against a path and each of its parent directories
(``*`` also matches ``/``), so "*/.cache" excludes everything below any .cache. A
temporary file renamed over its destination (how editors save) is reported as a
write of the destination; a move to the trash is still a move (the trash is
watched though excluded), while a move into another excluded tree, or out of the
watched paths, looks like a deletion (inotify sees only one side of it). The
agent's own state directory is always excluded: writing its outbox must not report
itself.

Nothing is resumed after a restart: inotify reports only what happens while it
watches, so there is no cursor.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux.fswatch import FsChange, TreeWatcher
from sekimori.agent.platform.linux.localusers import local_users, user_name
from sekimori.agent.platform.linux.mounts import RemovableMedia
from sekimori.clock import now_us
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)

__all__ = ["DEFAULT_EXCLUDE", "Exclusions", "FileCollector", "FileSettings"]

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE: tuple[str, ...] = (
    # Caches and the trash: churn nobody asked about.
    "*/.cache",
    "*/.local/share/Trash",
    "*/.thumbnails",
    # Build and version-control internals.
    "*/node_modules",
    "*/.git/objects",
    # Installed toolchains and package-manager caches: tens of thousands of folders
    # that only change when software is installed (the inventory collector sees that).
    "*/.venv",
    "*/site-packages",
    "*/__pycache__",
    "*/.pyenv",
    "*/.npm",
    "*/.cargo/registry",
    "*/.rustup",
    "*/.m2/repository",
    "*/.gradle/caches",
    "*/go/pkg/mod",
    # Browser profiles (the web collector reads their history; their files churn).
    "*/.mozilla/firefox",
    "*/snap/firefox/common/.mozilla",
    "*/.config/chromium",
    "*/.config/google-chrome",
    "*/.config/google-chrome-beta",
    "*/.config/microsoft-edge",
    "*/.config/BraveSoftware",
    # Editors' and GTK's temporary files.
    "*.tmp",
    "*.swp",
    "*.swx",
    "*/.goutputstream-*",
)

_TRASH = re.compile(r"/\.local/share/Trash(/(files|info))?$")

# A file written without pause is still reported after this many coalescing windows.
_MAX_HOLD_FACTOR = 10
_MAX_BATCH = 500
# How long the loop blocks between looks at ``stop``: the longest the collector
# contract allows, as each wake-up of an idle agent costs CPU for nothing.
_STOP_CHECK = 1.0


class FileSettings(CollectorSettings):
    # How often the mount table is checked for removable media (a poll: the kernel
    # says whether it changed; it is read only then).
    interval_seconds: float = 1.0
    # Directories to watch recursively; empty: every local user's home folder.
    paths: list[str] = msgspec.field(default_factory=list)
    # Globs for paths not to report (replaces the defaults when set).
    exclude: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    coalesce_seconds: float = 2.0
    # Paths to treat as removable media in addition to those found in the mount
    # table (a medium mounted somewhere unusual; tests).
    removable_paths: list[str] = msgspec.field(default_factory=list)
    # Whether to watch removable media found in the mount table.
    watch_removable: bool = True
    # The agent's state directory: never reported (see the module docstring).
    state_dir: str = "/var/lib/sekimori-agent"


class Exclusions:
    """Glob exclusions matched against a path and each of its parent directories."""

    def __init__(self, patterns: list[str]) -> None:
        joined = "|".join(fnmatch.translate(p) for p in patterns if p)
        self._regex = re.compile(joined) if joined else None

    def excluded(self, path: str) -> bool:
        if self._regex is None:
            return False
        while True:
            if self._regex.match(path):
                return True
            parent = os.path.dirname(path)
            if parent == path:
                return False
            path = parent

    def prune(self, path: bytes) -> bool:
        """Whether a directory's subtree need not be watched at all.

        The trash is excluded but still watched: only a watch on it tells a move to
        the trash (moved_from + moved_to) from a deletion.
        """
        text = os.fsdecode(path)
        return self.excluded(text) and _TRASH.search(text) is None


@dataclass(slots=True)
class _Held:
    """A created or modified file waiting for its writes to settle."""

    op: Literal["created", "modified"]
    time_us: int
    first: float
    last: float
    writes: int = 1


@dataclass(frozen=True, slots=True)
class _Medium:
    mount_point: str
    device: str


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class FileCollector(Collector):
    name: ClassVar[str] = "files"
    settings_type: ClassVar[type[CollectorSettings]] = FileSettings
    settings: FileSettings

    def run(self, stop: threading.Event) -> None:
        conf = self.settings
        state = os.path.abspath(conf.state_dir)
        self._exclusions = Exclusions([*conf.exclude, state])
        self._coalesce = conf.coalesce_seconds
        self._held: dict[str, _Held] = {}
        self._out: list[PendingEvent] = []
        changes: queue.SimpleQueue[FsChange] = queue.SimpleQueue()
        watcher = TreeWatcher(changes.put, self._exclusions.prune)
        watcher.start()
        self._mount_table = RemovableMedia()
        try:
            self._roots = self._watch_roots(watcher, conf)
            self._media: dict[str, _Medium] = {}
            self._refresh_media(watcher, conf)
            next_refresh = time.monotonic() + conf.interval_seconds
            while not stop.is_set():
                now = time.monotonic()
                wait = min(_STOP_CHECK, max(0.0, next_refresh - now), self._next_due(now))
                try:
                    change = changes.get(timeout=wait)
                except queue.Empty:
                    pass
                else:
                    self._handle(change)
                    while len(self._out) < _MAX_BATCH:
                        try:
                            self._handle(changes.get_nowait())
                        except queue.Empty:
                            break
                now = time.monotonic()
                self._release(now, everything=False)
                self._flush()
                if now >= next_refresh:
                    self._refresh_media(watcher, conf)
                    next_refresh = now + conf.interval_seconds
            # What happened before the stop is reported, settled or not.
            self._release(time.monotonic(), everything=True)
            self._flush()
        finally:
            self._mount_table.close()
            watcher.stop()

    # ---- what is watched -------------------------------------------------------------

    def _watch_roots(self, watcher: TreeWatcher, conf: FileSettings) -> list[str]:
        if conf.paths:
            wanted = [os.path.abspath(p) for p in conf.paths]
        else:
            try:
                wanted = [user.home for user in local_users()]
            except OSError as exc:
                raise CollectorError(f"cannot list local users: {exc}") from exc
            # The account the agent runs as is a user of this PC too (root on a
            # one-person machine, or the person running `make run`).
            own = os.path.expanduser("~")
            if own not in ("~", "/") and os.path.isdir(own):
                wanted.append(own)
        roots: list[str] = []
        failures: list[str] = []
        for path in dict.fromkeys(wanted):
            if self._exclusions.excluded(path):
                continue
            try:
                watcher.watch(path)
            except OSError as exc:
                failures.append(f"{path}: {exc.strerror or exc}")
                continue
            roots.append(path)
        if failures and not roots:
            raise CollectorError("cannot watch any configured path: " + "; ".join(failures))
        for failure in failures:
            log.warning("file collector cannot watch %s", failure)
        return roots

    def _refresh_media(self, watcher: TreeWatcher, conf: FileSettings) -> None:
        media = {os.path.abspath(p): _Medium(os.path.abspath(p), "") for p in conf.removable_paths}
        if conf.watch_removable:
            try:
                mounts = self._mount_table.current()
            except OSError as exc:
                log.warning("cannot read the mount table: %s", exc)
                mounts = []
            for mount in mounts:
                media.setdefault(mount.mount_point, _Medium(mount.mount_point, mount.source))
        for gone in set(self._media) - set(media):
            watcher.unwatch(gone)
        for path in media:
            # A medium mounted inside a watched home is already watched through it.
            if path in self._media or any(_under(path, root) for root in self._roots):
                continue
            try:
                watcher.watch(path)
            except OSError as exc:
                log.warning("cannot watch removable medium %s: %s", path, exc)
        self._media = media

    def _medium(self, path: str) -> _Medium | None:
        best: _Medium | None = None
        for root, medium in self._media.items():
            if _under(path, root) and (best is None or len(root) > len(best.mount_point)):
                best = medium
        return best

    # ---- turning notifications into events ---------------------------------------------

    def _handle(self, change: FsChange) -> None:
        op, path, dest, directory = change
        if op == "moved":
            self._moved(path, dest, directory)
            return
        if self._exclusions.excluded(path):
            return
        now = time.monotonic()
        if op == "created":
            self._release_path(path)
            if directory:
                self._emit_settled(path, "created", now_us(), directory=True)
            else:
                self._held[path] = _Held("created", now_us(), now, now)
        elif op == "modified":
            held = self._held.get(path)
            if held is None:
                self._held[path] = _Held("modified", now_us(), now, now)
            else:
                held.last = now
                held.writes += 1
        else:  # deleted
            self._release_path(path)
            owner = self._owner_of_parent(path)
            self._out.append(
                PendingEvent(
                    "file.deleted",
                    FileDeleted(
                        path=path, directory=directory, removable=self._medium(path) is not None
                    ),
                    os_user=owner,
                )
            )

    def _moved(self, src: str, dest: str, directory: bool) -> None:
        src_excluded = self._exclusions.excluded(src)
        dest_excluded = self._exclusions.excluded(dest)
        if src_excluded and dest_excluded:
            return
        if src_excluded:
            # A temporary file renamed over its destination: the destination was written.
            now = time.monotonic()
            self._release_path(dest)
            self._held[dest] = _Held("modified", now_us(), now, now)
            return
        self._release_path(src, stat_path=dest)
        if directory:
            # Writes still settling inside a moved directory continue at the new place.
            prefix = src.rstrip("/") + "/"
            for path in [p for p in self._held if p.startswith(prefix)]:
                self._held[dest + path[len(src) :]] = self._held.pop(path)
        size, owner = self._stat(dest, directory)
        self._out.append(
            PendingEvent(
                "file.moved",
                FileMoved(
                    src=src,
                    dest=dest,
                    directory=directory,
                    size=size,
                    owner=owner,
                    removable=self._medium(dest) is not None,
                ),
                os_user=owner or self._owner_of_parent(dest),
            )
        )

    def _next_due(self, now: float) -> float:
        if not self._held:
            return _STOP_CHECK
        cap = self._coalesce * _MAX_HOLD_FACTOR
        due = min(min(h.last + self._coalesce, h.first + cap) for h in self._held.values())
        return max(0.0, due - now)

    def _release(self, now: float, *, everything: bool) -> None:
        cap = self._coalesce * _MAX_HOLD_FACTOR
        for path, held in list(self._held.items()):
            if everything or now - held.last >= self._coalesce or now - held.first >= cap:
                del self._held[path]
                self._emit_settled(path, held.op, held.time_us, writes=held.writes)

    def _release_path(self, path: str, *, stat_path: str | None = None) -> None:
        held = self._held.pop(path, None)
        if held is not None:
            self._emit_settled(path, held.op, held.time_us, writes=held.writes, stat_path=stat_path)

    def _emit_settled(
        self,
        path: str,
        op: Literal["created", "modified"],
        time_us: int,
        *,
        directory: bool = False,
        writes: int = 1,
        stat_path: str | None = None,
    ) -> None:
        size, owner = self._stat(stat_path or path, directory)
        medium = self._medium(path)
        os_user = owner or self._owner_of_parent(path)
        removable = medium is not None
        if op == "created":
            payload: FileCreated | FileModified = FileCreated(
                path=path, directory=directory, size=size, owner=owner, removable=removable
            )
        else:
            payload = FileModified(
                path=path, size=size, owner=owner, removable=removable, writes=writes
            )
        self._out.append(PendingEvent(f"file.{op}", payload, os_user=os_user, time_us=time_us))
        if medium is not None and not directory:
            copied = FileCopiedToRemovable(
                path=path,
                operation=op,
                size=size,
                owner=owner,
                mount_point=medium.mount_point,
                device=medium.device,
            )
            self._out.append(
                PendingEvent("file.copied_to_removable", copied, os_user=os_user, time_us=time_us)
            )

    @staticmethod
    def _stat(path: str, directory: bool) -> tuple[int | None, str | None]:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return None, None
        return (None if directory else st.st_size), user_name(st.st_uid)

    @staticmethod
    def _owner_of_parent(path: str) -> str | None:
        try:
            return user_name(os.stat(os.path.dirname(path)).st_uid)
        except OSError:
            return None

    def _flush(self) -> None:
        if self._out:
            self.sink.emit_many(self._out)
            self._out = []
