"""Recursive inotify watches on directory trees, with excluded subtrees left unwatched.

Built on watchdog's inotify observer. watchdog watches every subdirectory of a
recursive watch; a home folder's caches, browser profiles and node_modules trees can
hold tens of thousands of directories, each an inotify watch (a kernel resource with
a per-user limit) and a stream of events to discard. So the watch group here prunes
excluded directories when it adds watches: nothing below them is ever watched.

Changes are handed to a callback from watchdog's dispatcher thread as ``FsChange``
values; the callback must be quick (put them on a queue).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyFD, WatchDescriptor

__all__ = ["FsChange", "TreeWatcher"]

Op = Literal["created", "modified", "deleted", "moved"]

# Only what the file collector reports: no open/close/attribute events, which also
# keeps the inotify mask (and the kernel's work) small.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]


class FsChange(NamedTuple):
    op: Op
    path: str
    dest: str  # the new path of a move; "" otherwise
    directory: bool


def _no_prune(_: bytes) -> bool:
    return False


@dataclass
class _PruningWatchGroup(InotifyWatchGroup):
    prune: Callable[[bytes], bool] = field(default=_no_prune)
    # The inode each watched directory had when its watch was added.
    _inodes: dict[bytes, tuple[int, int]] = field(default_factory=dict, init=False)

    def _add_callback(self, path: bytes) -> None:
        # A directory created while the initial walk runs is found by the walk and by
        # its creation event: adding it twice makes watchdog warn (an error under
        # -W error, in its reader thread). The same inode already watched is skipped;
        # a new directory at an old path is a new inode and is watched.
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            if path == self.path:
                raise
            return
        key = (st.st_dev, st.st_ino)
        if path in self._active_callbacks_by_path and self._inodes.get(path) == key:
            return
        super()._add_callback(path)
        self._inodes[path] = key

    def _remove_watch_internally(self, wd: WatchDescriptor) -> None:
        self._inodes.pop(self._active_callbacks_by_watch.get(wd, b""), None)
        super()._remove_watch_internally(wd)

    def _add_all_callbacks(self, path: bytes) -> None:
        # Replaces watchdog's walk: same watches, minus excluded subtrees.
        if path != self.path and self.prune(path):
            return
        self._add_callback(path)
        if not (self.is_recursive and os.path.isdir(path)):
            return
        for root, dirnames, _ in os.walk(path):
            kept = []
            for name in dirnames:
                full = os.path.join(root, name)
                if os.path.islink(full) or self.prune(full):
                    continue
                kept.append(name)
                self._add_callback(full)
            dirnames[:] = kept


class _PruningEmitter(InotifyEmitter):
    def __init__(self, *args: Any, prune: Callable[[bytes], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prune = prune

    def on_thread_start(self) -> None:
        self._inotify = _PruningWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=False,
            prune=self._prune,
        )

    def queue_events(self, timeout: float, *, full_events: bool = False) -> None:
        # watchdog's version logs an error when the watcher stops while events are
        # still buffered; stopping is normal here, so the leftovers are dropped quietly.
        inotify = self._inotify
        if inotify is None:
            return
        event = inotify.read_event()
        if event is None:
            return
        with self._lock:
            if self._inotify is not None:
                self.build_and_queue_event(event, full_events=full_events)


class _Observer(BaseObserver):
    def __init__(self, prune: Callable[[bytes], bool]) -> None:
        # One inotify instance of our own (not watchdog's process-wide shared one),
        # closed when the watcher stops.
        self._fd = InotifyFD()
        self._fd.start()
        super().__init__(_PruningEmitter, inotify_fd=self._fd, prune=prune)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._fd.stop()
        self._fd.join()


class _Handler(FileSystemEventHandler):
    def __init__(self, deliver: Callable[[FsChange], object]) -> None:
        self._deliver = deliver

    def dispatch(self, event: FileSystemEvent) -> None:
        # Moves of the files inside a moved directory are synthesized by watchdog, one
        # per file: the directory's own move says it all.
        if event.event_type == "moved" and event.is_synthetic:
            return
        op = event.event_type
        if op not in ("created", "modified", "deleted", "moved"):
            return
        self._deliver(
            FsChange(
                op,  # type: ignore[arg-type]  # narrowed by the membership test above
                os.fsdecode(event.src_path),
                os.fsdecode(event.dest_path) if op == "moved" else "",
                event.is_directory,
            )
        )


class TreeWatcher:
    """Watches directory trees recursively; reports changes to ``deliver``.

    ``prune(path)`` (a path as bytes) says whether a directory's subtree is excluded:
    it is then not watched at all. Lifecycle: start(), watch()/unwatch(), stop().
    """

    def __init__(
        self, deliver: Callable[[FsChange], object], prune: Callable[[bytes], bool]
    ) -> None:
        self._handler = _Handler(deliver)
        self._observer = _Observer(prune)
        self._watches: dict[str, ObservedWatch] = {}

    def start(self) -> None:
        self._observer.start()

    def watch(self, path: str) -> None:
        """Watch the tree at ``path``. Raises OSError if its root cannot be watched."""
        if path in self._watches:
            return
        self._watches[path] = self._observer.schedule(
            self._handler, path, recursive=True, event_filter=_EVENT_FILTER
        )

    def unwatch(self, path: str) -> None:
        watch = self._watches.pop(path, None)
        if watch is not None:
            # The tree may be gone already (an unmounted medium): nothing to undo.
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    @property
    def watched(self) -> list[str]:
        return list(self._watches)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()
