"""The pruning inotify tree watcher, on real directories (real inotify)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.fswatch import FsChange, TreeWatcher


def inotify_watch_count() -> int:
    """Inotify watches held by this process, as the kernel lists them in fdinfo."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                count += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


@pytest.fixture
def changes() -> queue.SimpleQueue[FsChange]:
    return queue.SimpleQueue()


@pytest.fixture
def watcher(changes: queue.SimpleQueue[FsChange]) -> Iterator[TreeWatcher]:
    w = TreeWatcher(changes.put, lambda path: path.endswith(b"/skip"))
    w.start()
    yield w
    w.stop()


def drain_until(changes: queue.SimpleQueue[FsChange], path: str) -> list[FsChange]:
    got: list[FsChange] = []
    deadline = time.monotonic() + 5
    while not any(c.path == path for c in got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no change for {path}; got {got}")
        try:
            got.append(changes.get(timeout=remaining))
        except queue.Empty:
            continue
    return got


def test_excluded_subtrees_are_not_watched(
    tmp_path: Path, watcher: TreeWatcher, changes: queue.SimpleQueue[FsChange]
) -> None:
    for i in range(20):
        (tmp_path / "skip" / f"d{i}").mkdir(parents=True)
        (tmp_path / "keep" / f"d{i}").mkdir(parents=True)
    before = inotify_watch_count()
    watcher.watch(str(tmp_path))
    # The root, keep and its 20 children; nothing below skip (and not skip itself).
    assert inotify_watch_count() - before == 22

    (tmp_path / "skip" / "d1" / "hidden.txt").write_text("x")
    (tmp_path / "keep" / "d1" / "seen.txt").write_text("x")
    got = drain_until(changes, str(tmp_path / "keep" / "d1" / "seen.txt"))
    assert FsChange("created", str(tmp_path / "keep" / "d1" / "seen.txt"), "", False) in got
    assert not [c for c in got if "hidden" in c.path]

    # A new excluded directory is not watched either.
    (tmp_path / "keep" / "skip").mkdir()
    (tmp_path / "keep" / "skip" / "inner.txt").write_text("x")
    (tmp_path / "marker").mkdir()
    got = drain_until(changes, str(tmp_path / "marker"))
    assert not [c for c in got if "inner" in c.path]


def test_moves_and_deletions(
    tmp_path: Path, watcher: TreeWatcher, changes: queue.SimpleQueue[FsChange]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    watcher.watch(str(tmp_path))
    (tmp_path / "a").rename(tmp_path / "b")
    (tmp_path / "b" / "f.txt").unlink()
    got = drain_until(changes, str(tmp_path / "b" / "f.txt"))
    assert got == [
        FsChange("moved", str(tmp_path / "a"), str(tmp_path / "b"), True),
        FsChange("deleted", str(tmp_path / "b" / "f.txt"), "", False),
    ]  # one move for the directory: no synthesized moves of its files


def test_directories_created_during_the_initial_walk(tmp_path: Path) -> None:
    """Found by both the walk and their creation event: watched once, no warning.

    (watchdog warns about the second registration from its reader thread, which
    pytest's -W error turns into a failure of this test.)
    """
    for i in range(200):
        (tmp_path / f"pre{i}" / "x").mkdir(parents=True)
    for round_ in range(5):
        root = tmp_path / f"round{round_}"
        root.mkdir()
        for i in range(200):
            (root / f"pre{i}").mkdir()
        changes: queue.SimpleQueue[FsChange] = queue.SimpleQueue()
        w = TreeWatcher(changes.put, lambda _: False)
        w.start()
        done = threading.Event()

        def create(root: Path = root, done: threading.Event = done) -> None:
            i = 0
            while not done.is_set():
                (root / f"new{i}").mkdir()
                i += 1

        maker = threading.Thread(target=create)
        maker.start()
        try:
            w.watch(str(root))
            time.sleep(0.05)
        finally:
            done.set()
            maker.join()
            w.stop()


def test_watching_a_missing_root_raises(watcher: TreeWatcher, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        watcher.watch(str(tmp_path / "missing"))
    assert watcher.watched == []
