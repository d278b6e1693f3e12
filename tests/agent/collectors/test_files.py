"""The file collector against real files in tmp directories (real inotify).

Removable media: no USB stick can be plugged in here. The removable decision itself
is tested on a recorded mountinfo + sysfs fixture in tests/agent/platform/
test_mounts.py; here a write to a removable medium is shown end to end twice: with
a directory configured as removable (``removable_paths``) and, as root, with a real
tmpfs mounted under /media (which the mount table marks removable like a stick).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.files import DEFAULT_EXCLUDE, Exclusions, FileCollector, FileSettings
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)
from tests.agent.collectors.harness import RunningCollector

Seen = tuple[str, str | None, Payload]


def events(outbox: Outbox) -> list[Seen]:
    return [
        (e.kind, e.os_user, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 30)
    ]


def wait_for(outbox: Outbox, found: Callable[[list[Seen]], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not found(seen := events(outbox)):
        if time.monotonic() > deadline:
            pytest.fail(f"expected event did not appear; got {seen}")
        time.sleep(0.05)


def path_of(payload: Payload) -> str:
    return str(getattr(payload, "path", ""))


def paths_of(seen: list[Seen], kind: str) -> list[str]:
    return [path_of(p) for k, _, p in seen if k == kind]


class Running(RunningCollector):
    """The collector's run() in a thread (see harness.RunningCollector)."""

    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        conf = msgspec.convert(settings, FileSettings)
        collector = FileCollector(conf, Sink(outbox, "files"))
        super().__init__(collector)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home" / "alice"
    path.mkdir(parents=True)
    return path


def until_watching(outbox: Outbox, directory: Path) -> None:
    """Make probe directories until one is reported: the watch on ``directory`` is live.

    (Directories, because their creation is reported at once, not after coalescing.)
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = directory / f"probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            if str(probe) in paths_of(events(outbox), "file.created"):
                return
            time.sleep(0.02)
    pytest.fail(f"{directory} never reported a probe")


def start(outbox: Outbox, home: Path, **settings: Any) -> Running:
    settings.setdefault("paths", [str(home)])
    settings.setdefault("coalesce_seconds", 0.3)
    settings.setdefault("watch_removable", False)
    running = Running(outbox, **settings)
    until_watching(outbox, home)
    return running


def test_create_write_move_delete_of_real_files(outbox: Outbox, home: Path) -> None:
    running = start(outbox, home)
    try:
        report = home / "Documents" / "report.txt"
        report.parent.mkdir()
        with report.open("wb") as f:
            for _ in range(3):
                f.write(b"x" * 1000)
                f.flush()
        os.chown(report, 65534, 65534)  # owned by "nobody": the owner comes from stat
        wait_for(outbox, lambda s: str(report) in paths_of(s, "file.created"))

        with report.open("ab") as f:
            f.write(b"more")
        wait_for(outbox, lambda s: str(report) in paths_of(s, "file.modified"))

        final = home / "final.txt"
        report.rename(final)
        wait_for(outbox, lambda s: any(k == "file.moved" for k, _, _ in s))

        final.unlink()
        wait_for(outbox, lambda s: str(final) in paths_of(s, "file.deleted"))
    finally:
        running.stop()

    seen = events(outbox)
    (directory,) = [
        p for k, _, p in seen if k == "file.created" and path_of(p) == str(report.parent)
    ]
    assert isinstance(directory, FileCreated) and directory.directory and directory.size is None

    (created,) = [(u, p) for k, u, p in seen if k == "file.created" and path_of(p) == str(report)]
    assert created[1] == FileCreated(
        path=str(report), size=3000, owner="nobody", directory=False, removable=False
    )
    assert created[0] == "nobody"

    (modified,) = [p for k, _, p in seen if k == "file.modified"]
    assert isinstance(modified, FileModified)
    assert modified.path == str(report) and modified.size == 3004 and modified.owner == "nobody"

    (moved,) = [(u, p) for k, u, p in seen if k == "file.moved"]
    assert moved[1] == FileMoved(
        src=str(report), dest=str(final), size=3004, owner="nobody", directory=False
    )
    assert moved[0] == "nobody"

    (deleted,) = [(u, p) for k, u, p in seen if k == "file.deleted"]
    assert deleted[1] == FileDeleted(path=str(final), directory=False, removable=False)
    assert deleted[0] == "root"  # the owner of the folder it was deleted from
    # Order of the operations is kept.
    kinds = [k for k, _, p in seen if "probe" not in path_of(p)]
    assert kinds == ["file.created", "file.created", "file.modified", "file.moved", "file.deleted"]


def test_repeated_writes_are_one_event(outbox: Outbox, home: Path) -> None:
    big = home / "big.bin"
    big.write_bytes(b"")
    running = start(outbox, home, coalesce_seconds=1.0)
    try:
        with big.open("ab") as f:
            for _ in range(200):
                f.write(b"y" * 512)
                f.flush()
                os.fsync(f.fileno())
        wait_for(outbox, lambda s: str(big) in paths_of(s, "file.modified"))
    finally:
        running.stop()
    (modified,) = [p for k, _, p in events(outbox) if k == "file.modified"]
    assert isinstance(modified, FileModified)
    assert modified.size == 200 * 512
    assert modified.writes > 1  # many notifications, one event


def test_created_then_deleted_within_the_window_reports_both(outbox: Outbox, home: Path) -> None:
    running = start(outbox, home, coalesce_seconds=5.0)
    try:
        brief = home / "brief.txt"
        brief.write_text("gone soon")
        brief.unlink()
        wait_for(outbox, lambda s: str(brief) in paths_of(s, "file.deleted"))
    finally:
        running.stop()
    seen = [(k, p) for k, _, p in events(outbox) if path_of(p) == str(home / "brief.txt")]
    assert [k for k, _ in seen] == ["file.created", "file.deleted"]
    assert seen[0][1] == FileCreated(path=str(home / "brief.txt"), size=None, owner=None)


def test_exclusions_are_not_reported(outbox: Outbox, home: Path, tmp_path: Path) -> None:
    state = home / "agent-state"
    state.mkdir()
    (home / ".cache" / "thumbs").mkdir(parents=True)
    (home / "proj" / "node_modules" / "lib").mkdir(parents=True)
    running = start(outbox, home, state_dir=str(state))
    try:
        (home / ".cache" / "thumbs" / "a.png").write_bytes(b"png")
        (home / "proj" / "node_modules" / "lib" / "index.js").write_text("js")
        (home / "proj" / "node_modules" / "new").mkdir()
        (home / "notes.swp").write_text("swap")
        (home / "download.tmp").write_text("partial")
        (state / "outbox.db-wal").write_bytes(b"wal")
        (home / ".local" / "share" / "Trash" / "files").mkdir(parents=True)
        (home / "visible.txt").write_text("marker")
        wait_for(outbox, lambda s: str(home / "visible.txt") in paths_of(s, "file.created"))
    finally:
        running.stop()
    reported = [path_of(p) for _, _, p in events(outbox) if "probe-" not in path_of(p)]
    assert str(home / "visible.txt") in reported
    quiet = [".cache", "proj", "notes.swp", "download.tmp", "agent-state", ".local/share/Trash"]
    assert not [p for p in reported if any(p.startswith(str(home / q)) for q in quiet)]
    # Only the new parents of the trash (mkdir -p) remain.
    assert set(reported) <= {
        str(home / ".local"),
        str(home / ".local/share"),
        str(home / "visible.txt"),
    }


def test_custom_exclusions_replace_the_defaults(outbox: Outbox, home: Path) -> None:
    running = start(outbox, home, exclude=["*/secret"])
    try:
        (home / "secret").mkdir()
        (home / "secret" / "x.txt").write_text("no")
        (home / "z.tmp").write_text("now reported")
        wait_for(outbox, lambda s: str(home / "z.tmp") in paths_of(s, "file.created"))
    finally:
        running.stop()
    assert not [p for p in paths_of(events(outbox), "file.created") if "secret" in p]


def test_temporary_file_renamed_over_destination_is_a_write(outbox: Outbox, home: Path) -> None:
    doc = home / "doc.txt"
    doc.write_text("v1")
    running = start(outbox, home)
    try:
        tmp = home / "doc.txt.tmp"
        tmp.write_text("version two")
        tmp.rename(doc)
        wait_for(outbox, lambda s: str(doc) in paths_of(s, "file.modified"))
    finally:
        running.stop()
    seen = [(k, p) for k, _, p in events(outbox) if "probe-" not in path_of(p)]
    assert seen == [("file.modified", FileModified(path=str(doc), size=11, owner="root"))]


def test_move_to_the_trash_is_a_move(outbox: Outbox, home: Path) -> None:
    trash = home / ".local" / "share" / "Trash" / "files"
    trash.mkdir(parents=True)
    victim = home / "plan.odt"
    victim.write_text("plan")
    running = start(outbox, home)
    try:
        victim.rename(trash / "plan.odt")
        wait_for(outbox, lambda s: any(k == "file.moved" for k, _, _ in s))
    finally:
        running.stop()
    (moved,) = [p for k, _, p in events(outbox) if k == "file.moved"]
    assert moved == FileMoved(src=str(victim), dest=str(trash / "plan.odt"), size=4, owner="root")


def test_write_to_a_path_configured_as_removable(
    outbox: Outbox, home: Path, tmp_path: Path
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    running = start(outbox, home, removable_paths=[str(stick)])
    try:
        until_watching(outbox, stick)
        (stick / "secrets.docx").write_bytes(b"d" * 2048)
        wait_for(
            outbox,
            lambda s: any(
                k == "file.copied_to_removable" and "secrets" in path_of(p) for k, _, p in s
            ),
        )
    finally:
        running.stop()
    seen = [(k, p) for k, _, p in events(outbox) if path_of(p) == str(stick / "secrets.docx")]
    assert seen == [
        (
            "file.created",
            FileCreated(path=str(stick / "secrets.docx"), size=2048, owner="root", removable=True),
        ),
        (
            "file.copied_to_removable",
            FileCopiedToRemovable(
                path=str(stick / "secrets.docx"),
                operation="created",
                size=2048,
                owner="root",
                mount_point=str(stick),
                device="",
            ),
        ),
    ]
    # Home files are not flagged.
    assert all(
        not getattr(p, "removable", False) for _, _, p in events(outbox) if str(home) in path_of(p)
    )


@contextlib.contextmanager
def tmpfs_under_media() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = Path("/media") / f"sekimori-test-{uuid.uuid4().hex[:8]}"
    point.mkdir(parents=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        try:
            yield point
        finally:
            subprocess.run(["umount", str(point)], check=True)
    finally:
        point.rmdir()


def test_copy_to_a_medium_mounted_while_running(outbox: Outbox, home: Path) -> None:
    """A real tmpfs mounted under /media after the collector started is found in the
    mount table, watched, and a copy onto it is flagged (as root)."""
    source = home / "customers.csv"
    source.write_bytes(b"c" * 4096)
    running = start(outbox, home, watch_removable=True, interval_seconds=0.2)
    try:
        with tmpfs_under_media() as medium:
            # Until the collector has read the new mount table, a copy is not seen:
            # copy again until it is (each copy has its own name).
            deadline = time.monotonic() + 10
            n = 0
            while not any(k == "file.copied_to_removable" for k, _, _ in events(outbox)):
                if time.monotonic() > deadline:
                    pytest.fail("copy to the mounted medium was never reported")
                shutil.copyfile(source, medium / f"customers-{n}.csv")
                n += 1
                time.sleep(0.3)
            wait_for(outbox, lambda s: any(k == "file.copied_to_removable" for k, _, _ in s))
    finally:
        running.stop()
    copies = [p for k, _, p in events(outbox) if k == "file.copied_to_removable"]
    assert copies
    copy = copies[0]
    assert isinstance(copy, FileCopiedToRemovable)
    assert copy.mount_point == str(medium) and copy.device == "tmpfs"
    assert copy.size == 4096 and copy.operation == "created"
    created = [p for k, _, p in events(outbox) if k == "file.created" and path_of(p) == copy.path]
    assert created == [FileCreated(path=copy.path, size=4096, owner="root", removable=True)]


def test_restart_does_not_repeat_old_operations(outbox: Outbox, home: Path) -> None:
    running = start(outbox, home)
    (home / "once.txt").write_text("1")
    wait_for(outbox, lambda s: str(home / "once.txt") in paths_of(s, "file.created"))
    running.stop()
    running = start(outbox, home)
    (home / "twice.txt").write_text("2")
    wait_for(outbox, lambda s: str(home / "twice.txt") in paths_of(s, "file.created"))
    running.stop()
    assert paths_of(events(outbox), "file.created").count(str(home / "once.txt")) == 1


def test_no_watchable_path_fails_with_the_reason(outbox: Outbox, tmp_path: Path) -> None:
    conf = FileSettings(paths=[str(tmp_path / "missing")], watch_removable=False)
    collector = FileCollector(conf, Sink(outbox, "files"))
    with pytest.raises(CollectorError, match=r"cannot watch any configured path: .*missing"):
        collector.run(threading.Event())


def test_exclusions_match_a_path_or_any_parent() -> None:
    ex = Exclusions(list(DEFAULT_EXCLUDE))
    assert ex.excluded("/home/a/.cache")
    assert ex.excluded("/home/a/.cache/chromium/Default/Cache/f_0001")
    assert ex.excluded("/home/a/src/app/node_modules/left-pad/index.js")
    assert ex.excluded("/home/a/.config/chromium/Default/History")
    assert ex.excluded("/home/a/notes.txt.swp")
    assert ex.excluded("/home/a/repo/.git/objects/ab/cdef")
    assert not ex.excluded("/home/a/repo/.git/config")
    assert not ex.excluded("/home/a/Documents/cache.txt")
    assert not Exclusions([]).excluded("/home/a/.cache")
