"""Processes on Linux, read from /proc, and the SHA-256 of their executables.

Cost is the point of this module's shape. ``scan_pids`` lists /proc once (one
getdents loop, ~0.2 ms for a few hundred processes) and returns each pid with the
inode number of its /proc directory; a caller compares that with the previous scan
and reads ``/proc/<pid>/stat`` only for pids that are new or whose directory inode
changed. The /proc inode alone is not an identity (the kernel reallocates it when it
drops cached dentries), so a process is identified by (pid, start ticks), which
survives pid reuse. Full details (``read_process``) are read once per process.

Hashes are cached by the executable's (device, inode, size, mtime, ctime): ctime
is in the key because mtime can be set back by anyone who can write the file, ctime
cannot. The file is read through ``/proc/<pid>/exe``, which opens the very file the
process runs even if it was deleted or lives in another mount namespace.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLOCK_TICKS",
    "ExeHasher",
    "FileKey",
    "HashJob",
    "HashResult",
    "ProcStat",
    "ProcessInfo",
    "boot_id",
    "boot_wall_us",
    "read_exe",
    "read_process",
    "read_stat",
    "scan_pids",
    "ticks_to_us",
    "user_name",
]

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# task->flags bit of kernel threads (include/linux/sched.h). They have no executable
# and no user-space command line: nothing to report.
_PF_KTHREAD = 0x00200000
_DELETED = " (deleted)"
# Errors that mean "this process is gone or not ours to read", not a bug.
_GONE = (FileNotFoundError, ProcessLookupError, PermissionError)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the collector needs."""

    ppid: int
    name: str
    state: str
    start_ticks: int
    """Clock ticks from boot to the process's start (field 22)."""
    kernel_thread: bool


@dataclass(frozen=True, slots=True)
class FileKey:
    """What identifies one version of a file for the hash cache."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str
    start_ticks: int
    uid: int
    exe: str
    """The executable's path as the kernel gives it (may carry surrogate escapes)."""
    exe_deleted: bool
    exe_key: FileKey | None
    argv: list[str]
    argv_truncated: bool


@dataclass(frozen=True, slots=True)
class HashResult:
    status: Literal["ok", "too_large", "unreadable", "disabled"]
    sha256: str = ""


def scan_pids() -> dict[int, int]:
    """Every process id in /proc, mapped to the inode number of its directory."""
    with os.scandir(PROC) as entries:
        return {int(e.name): e.inode() for e in entries if e.name.isdigit()}


def _read(path: str, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None if it no longer exists."""
    try:
        data = _read(f"{PROC}/{pid}/stat", 4096)
    except _GONE:
        return None
    # The name sits in parentheses and may itself contain ")" and spaces: the last
    # ")" ends it.
    close = data.rfind(b")")
    if close < 0:
        return None
    name = data[data.find(b"(") + 1 : close].decode("utf-8", "replace")
    fields = data[close + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid (4), flags (9), starttime (22).
    return ProcStat(
        ppid=int(fields[1]),
        name=name,
        state=fields[0].decode("ascii", "replace"),
        start_ticks=int(fields[19]),
        kernel_thread=bool(int(fields[6]) & _PF_KTHREAD),
    )


def read_exe(pid: int) -> tuple[str, bool]:
    """(path, deleted) of the process's executable; ("", False) when not readable."""
    try:
        path = os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        # ENOENT: kernel thread or zombie; EACCES: a process we may not inspect.
        return "", False
    if path.endswith(_DELETED):
        return path[: -len(_DELETED)], True
    return path, False


def _uid(pid: int) -> int | None:
    try:
        status = _read(f"{PROC}/{pid}/status", 8192)
    except _GONE:
        return None
    start = status.find(b"\nUid:")
    if start < 0:
        return None
    # "Uid:\treal\teffective\tsaved\tfs": the real uid is who started it (sudo sets
    # all four to root, which is what sudo does).
    return int(status[start + 5 :].split(maxsplit=1)[0])


def _argv(pid: int, max_bytes: int) -> tuple[list[str], bool]:
    try:
        raw = _read(f"{PROC}/{pid}/cmdline", max_bytes + 1)
    except _GONE:
        return [], False
    truncated = len(raw) > max_bytes
    raw = raw[:max_bytes]
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    if not raw:
        return [], truncated
    return [arg.decode("utf-8", "replace") for arg in raw.split(b"\0")], truncated


def _exe_key(pid: int) -> FileKey | None:
    try:
        st = os.stat(f"{PROC}/{pid}/exe")
    except OSError:
        return None
    return _key(st)


def _key(st: os.stat_result) -> FileKey:
    return FileKey(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_process(pid: int, stat_line: ProcStat, max_argv_bytes: int) -> ProcessInfo | None:
    """Everything reported about a process, or None if it ended meanwhile.

    The executable and command line are read first: for a process that lives a few
    milliseconds they are what matters, and they vanish first when it exits.
    """
    exe, deleted = read_exe(pid)
    argv, truncated = _argv(pid, max_argv_bytes)
    key = _exe_key(pid) if exe else None
    uid = _uid(pid)
    if uid is None:
        return None
    return ProcessInfo(
        pid=pid,
        ppid=stat_line.ppid,
        name=stat_line.name,
        start_ticks=stat_line.start_ticks,
        uid=uid,
        exe=exe,
        exe_deleted=deleted,
        exe_key=key,
        argv=argv,
        argv_truncated=truncated,
    )


def boot_id() -> str:
    """This boot's random id: pids and start ticks mean nothing across boots."""
    with open(f"{PROC}/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip()


def boot_wall_us() -> int:
    """The wall-clock time of boot, in microseconds since the epoch.

    Computed from CLOCK_BOOTTIME (which start ticks count from) rather than the
    whole-second ``btime`` of /proc/stat, so start times are exact to one tick.
    """
    return time.time_ns() // 1000 - time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000


def ticks_to_us(ticks: int, boot_us: int) -> int:
    return boot_us + ticks * 1_000_000 // CLOCK_TICKS


@functools.lru_cache(maxsize=512)
def user_name(uid: int) -> str:
    """The account name of ``uid``, or the uid as text when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class HashJob:
    """One executable being hashed; ``result`` is None until it is done."""

    __slots__ = ("_fd", "_sha", "exe", "key", "pid", "result")

    def __init__(self, pid: int, exe: str, key: FileKey | None) -> None:
        self.pid = pid
        self.exe = exe
        self.key = key
        self.result: HashResult | None = None
        self._fd: int | None = None
        # Made when the file is opened: most jobs are cache hits, done at once.
        self._sha: hashlib._Hash | None = None


class ExeHasher:
    """SHA-256 of executables, each file version hashed once (a bounded LRU cache).

    Hashing is incremental so that it never holds up the caller for long: ``start``
    returns a job (already done on a cache hit), ``work`` advances the running jobs by
    a bounded number of bytes. A 300 MB browser binary takes ~0.4 s of CPU to hash;
    done in slices, the process collector keeps reading kernel events in between.
    Jobs for the same file version are shared.

    ``hashed_files`` counts the files actually read, and ``on_hash`` (if set) is called
    with the path and key of each: a cache hit does neither. That is how the cache is
    tested and how a benchmark sees the cost.
    """

    def __init__(self, max_bytes: int, max_entries: int = 4096) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.hashed_files = 0
        self.on_hash: Callable[[str, FileKey], object] | None = None
        self._cache: OrderedDict[FileKey, str] = OrderedDict()
        self._running: dict[FileKey, HashJob] = {}
        # 256 KiB: reads this large cost no more CPU per byte than 1 MiB ones, and the
        # buffer stays resident once a large file has been hashed through it.
        self._buffer = bytearray(256 << 10)

    @property
    def busy(self) -> bool:
        """Whether jobs are waiting for ``work``."""
        return bool(self._running)

    def start(self, pid: int, exe: str, key: FileKey | None) -> HashJob:
        """A job for the file ``pid`` runs (``key`` as seen when it was examined)."""
        job = HashJob(pid, exe, key)
        if self.max_bytes <= 0:
            job.result = HashResult("disabled")
        elif key is None:
            job.result = HashResult("unreadable")
        elif key.size > self.max_bytes:
            job.result = HashResult("too_large")
        elif (cached := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            job.result = HashResult("ok", cached)
        else:
            return self._running.setdefault(key, job)
        return job

    def work(self, budget_bytes: int) -> None:
        """Hash up to about ``budget_bytes`` of the running jobs, oldest first."""
        view = memoryview(self._buffer)
        for job in list(self._running.values()):
            while budget_bytes > 0 and job.result is None:
                budget_bytes -= self._step(job, view)
            if budget_bytes <= 0:
                return

    def digest(self, pid: int, exe: str, key: FileKey | None) -> HashResult:
        """Hash to completion (and whatever other jobs are running)."""
        job = self.start(pid, exe, key)
        while job.result is None:
            self.work(1 << 30)
        return job.result

    def close(self) -> None:
        """Abandon the running jobs (their results stay None) and close their files."""
        for job in self._running.values():
            if job._fd is not None:
                os.close(job._fd)
        self._running.clear()

    def _step(self, job: HashJob, view: memoryview) -> int:
        """Read one buffer of ``job``'s file; returns the bytes consumed (>= 1)."""
        if job._fd is None:
            job._fd = self._open(job)
            if job._fd is None:
                self._finish(job, None)
                return 1
            job._sha = hashlib.sha256()
            self.hashed_files += 1
            if self.on_hash is not None and job.key is not None:
                self.on_hash(job.exe, job.key)
        try:
            count = os.readv(job._fd, [view])
        except OSError:
            self._finish(job, None)
            return 1
        if count == 0:
            # A file rewritten while we read it would be cached under the old key
            # with a hash of neither version.
            same = _key(os.fstat(job._fd)) == job.key
            self._finish(job, job._sha.hexdigest() if same and job._sha is not None else None)
            return 1
        if job._sha is not None:
            job._sha.update(view[:count])
        return count

    def _finish(self, job: HashJob, digest: str | None) -> None:
        if job._fd is not None:
            os.close(job._fd)
            job._fd = None
        if job.key is not None:
            self._running.pop(job.key, None)
        if digest is None or job.key is None:
            job.result = HashResult("unreadable")
            return
        job.result = HashResult("ok", digest)
        self._cache[job.key] = digest
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _open(self, job: HashJob) -> int | None:
        """The job's file, opened and proven to be the version its key names."""
        fd = self._open_path(f"{PROC}/{job.pid}/exe")
        if fd is None and job.exe:
            # The process ended before we got to it: its path may still hold the very
            # same file, which the key check below proves (or refutes).
            fd = self._open_path(job.exe, os.O_NOFOLLOW)
        if fd is None:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or _key(st) != job.key:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _open_path(path: str, flags: int = 0) -> int | None:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | flags)
        except OSError:
            # Gone, not permitted, a symlink swapped in (ELOOP): all "cannot hash".
            return None
