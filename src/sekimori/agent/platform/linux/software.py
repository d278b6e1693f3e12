"""Installed software on Linux: dpkg, rpm, snap and flatpak.

Each manager is a ``SoftwareSource`` with three operations:

* ``present()`` — is this manager on the PC at all (cheap: one stat or PATH lookup);
* ``signature()`` — a cheap fingerprint (file times) that changes when the installed
  set may have changed, so the collector re-reads only then. ``None`` when the manager
  has no such file: it is then read only on the collector's full rounds;
* ``read(stop)`` — the installed packages. Raises ``SoftwareReadError`` (with a
  message naming the manager and the cause) when the list cannot be had; never
  returns a partial list as if it were complete. A manager made of many small
  metadata files (pypi, npm: see ``language_packages``) leaves out an entry whose file
  is broken and says so in ``skipped`` (one line each, set by every ``read``): the
  list is then complete but for those entries.

dpkg is read straight from its database (``status`` plus the ``updates/`` journal that
dpkg folds into it later), which is fast and spawns nothing. rpm, snap and flatpak are
asked through their own commands, with a time limit and an eye on ``stop``.
"""

from __future__ import annotations

import abc
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from sekimori.protocol.events.inventory import Manager, Package

__all__ = [
    "SOURCES",
    "DpkgSource",
    "FlatpakSource",
    "RpmSource",
    "Signature",
    "SnapSource",
    "SoftwareReadError",
    "SoftwareSource",
    "compare_dpkg_versions",
    "compare_rpm_version_strings",
    "compare_rpm_versions",
    "file_signature",
    "parse_dpkg_status",
    "parse_flatpak_list",
    "parse_rpm_query",
    "parse_snap_list",
    "run_command",
]

Signature = tuple[tuple[str, int, int, int], ...]


class SoftwareReadError(Exception):
    """A manager's package list could not be read; the message says which and why."""


# ---- running the managers' commands ----------------------------------------------------


def run_command(argv: list[str], *, timeout: float, stop: threading.Event | None = None) -> str:
    """Run ``argv`` (argv[0] an absolute path) and return its stdout.

    Waits in one-second steps so a set ``stop`` ends the wait promptly (the child is
    killed). Raises SoftwareReadError on a non-zero exit, a timeout or a stop.
    """
    # The C locale keeps the output format stable whatever the PC's language.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    proc = subprocess.Popen(  # noqa: S603 - fixed argv of a package manager, no shell
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    waited = 0.0
    with proc:
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                waited += 1.0
                if waited >= timeout or (stop is not None and stop.is_set()):
                    proc.kill()
                    proc.communicate()
                    why = "stopped" if waited < timeout else f"timed out after {timeout:.0f} s"
                    raise SoftwareReadError(f"{' '.join(argv)}: {why}") from None
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        raise SoftwareReadError(
            f"{' '.join(argv)} exited with {proc.returncode}: {detail[-1] if detail else ''}"
        )
    return out.decode("utf-8", "replace")


def _stat_key(path: Path) -> tuple[str, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def file_signature(paths: list[Path]) -> Signature | None:
    """The (path, mtime, size, inode) of each path that exists; None if none does."""
    keys = tuple(k for k in map(_stat_key, paths) if k is not None)
    return keys or None


# ---- dpkg ------------------------------------------------------------------------------

# Package states that mean dpkg is working on the package right now.
_DPKG_IN_FLUX = frozenset(
    {"half-installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending"}
)
_DPKG_SETTLE_SECONDS = 30.0

# Package states (the third word of Status:) whose files are on disk. "config-files"
# (removed, configuration kept) and "not-installed" are not installed software.
_DPKG_PRESENT = frozenset(
    {
        "installed",
        "unpacked",
        "half-configured",
        "half-installed",
        "triggers-awaited",
        "triggers-pending",
    }
)


def _dpkg_stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The fields this module needs from each stanza of a dpkg database file."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            if fields:
                yield fields
                fields = {}
            continue
        if line[0] in " \t":
            continue  # continuation of a multi-line field (Description, Conffiles)
        key, sep, value = line.partition(":")
        if sep and key in ("Package", "Status", "Version", "Architecture", "Source"):
            fields[key] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(
    text: str | Iterable[str], *, origin: str = "status"
) -> dict[tuple[str, str], Package | None]:
    """Entries of a dpkg status-format text (or its lines), by (name, architecture).

    ``None`` marks a package dpkg knows but whose files are not on disk (removed with
    its configuration kept, or never installed): a journal entry saying so must
    override an older "installed" entry. Raises SoftwareReadError on a stanza without
    Package or Status.
    """
    return _parse_dpkg(text.splitlines() if isinstance(text, str) else text, origin)[0]


def _parse_dpkg(
    lines: Iterable[str], origin: str
) -> tuple[dict[tuple[str, str], Package | None], bool]:
    """``parse_dpkg_status``, and whether a package is in a transitional state."""
    out: dict[tuple[str, str], Package | None] = {}
    in_flux = False
    for fields in _dpkg_stanzas(lines):
        name = fields.get("Package")
        status = fields.get("Status")
        if not name or not status:
            raise SoftwareReadError(f"dpkg {origin}: stanza without Package/Status: {fields}")
        arch = fields.get("Architecture", "")
        words = status.split()
        in_flux = in_flux or (len(words) == 3 and words[2] in _DPKG_IN_FLUX)
        if len(words) != 3 or words[2] not in _DPKG_PRESENT:
            out[(name, arch)] = None
            continue
        version = fields.get("Version", "")
        # "Source: name" or "Source: name (version)" when it differs from the binary's.
        source, _, source_version = fields.get("Source", name).partition(" ")
        out[(name, arch)] = Package(
            manager="dpkg",
            name=name,
            version=version,
            architecture=arch,
            source=source,
            source_version=source_version.strip(" ()") or version,
        )
    return out, in_flux


class SoftwareSource(abc.ABC):
    """One package manager. See the module docstring for the contract."""

    manager: ClassVar[Manager]

    def __init__(self, *, timeout: float = 120.0) -> None:
        self.timeout = timeout
        # Entries the last read() left out, each "path: why" (see the module docstring).
        self.skipped: list[str] = []

    @abc.abstractmethod
    def present(self) -> bool: ...

    @abc.abstractmethod
    def signature(self) -> Signature | None: ...

    @abc.abstractmethod
    def read(self, stop: threading.Event | None = None) -> list[Package]: ...


class DpkgSource(SoftwareSource):
    """dpkg's own database, read directly (``timeout`` is unused: nothing is run)."""

    manager = "dpkg"

    def __init__(self, *, timeout: float = 120.0, admin_dir: Path = Path("/var/lib/dpkg")) -> None:
        super().__init__(timeout=timeout)
        self.admin_dir = admin_dir

    def present(self) -> bool:
        return (self.admin_dir / "status").is_file()

    def signature(self) -> Signature | None:
        # dpkg replaces status by rename (new inode) and journals in updates/ between
        # checkpoints; the directory's mtime changes when a journal file comes or goes.
        return file_signature([self.admin_dir / "status", self.admin_dir / "updates"])

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        status = self.admin_dir / "status"
        # dpkg may checkpoint (rewrite status, delete journal files) while we read:
        # read again until the database did not change under us.
        for _ in range(5):
            before = self.signature()
            try:
                packages = self._read_once(status)
            except FileNotFoundError:
                if not status.exists():
                    raise SoftwareReadError(f"dpkg: {status} does not exist") from None
                continue
            except OSError as exc:
                raise SoftwareReadError(f"dpkg: cannot read {self.admin_dir}: {exc}") from None
            if self.signature() == before:
                return packages
        raise SoftwareReadError(f"dpkg: {self.admin_dir} kept changing while being read")

    def _read_once(self, status: Path) -> list[Package]:
        files = [(status, "status")]
        # Journal entries (files named by number) override status, in order, as in dpkg.
        updates = self.admin_dir / "updates"
        if updates.is_dir():
            journal = sorted((p for p in updates.iterdir() if p.name.isdigit()), key=_number)
            files += [(entry, str(entry)) for entry in journal]
        merged: dict[tuple[str, str], Package | None] = {}
        in_flux = False
        newest = 0.0
        for path, origin in files:
            # Line by line: the status file is ~1 MB, and holding it whole (with its
            # lines) left ~2 MiB of heap behind in the agent, which does not shrink.
            with path.open(encoding="utf-8", errors="replace") as f:
                newest = max(newest, os.fstat(f.fileno()).st_mtime)
                entries, flux = _parse_dpkg(f, origin)
            merged.update(entries)
            in_flux = in_flux or flux
        # dpkg writes a package's record in steps (half-installed before its fields are
        # complete). While an operation is under way, keep the last complete list: a
        # record read mid-step would be reported with the wrong metadata. A transitional
        # state older than _DPKG_SETTLE_SECONDS is an interrupted dpkg and is read as is.
        if in_flux and time.time() - newest < _DPKG_SETTLE_SECONDS:
            raise SoftwareReadError("dpkg: an installation or removal is in progress")
        return sorted((p for p in merged.values() if p is not None), key=_by_name)


def _by_name(package: Package) -> tuple[str, str, str]:
    return (package.name, package.architecture, package.version)


def _number(path: Path) -> int:
    return int(path.name)


# ---- rpm -------------------------------------------------------------------------------

_RPM_QUERY = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n"


def parse_rpm_query(text: str) -> list[Package]:
    """Parse ``rpm -qa --queryformat`` output in the ``_RPM_QUERY`` format."""
    out: list[Package] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 6:
            raise SoftwareReadError(f"rpm: unexpected query line: {line!r}")
        name, epoch, version, release, arch, source_rpm = parts
        evr = f"{version}-{release}" if epoch == "(none)" else f"{epoch}:{version}-{release}"
        source, source_version = name, evr
        if source_rpm != "(none)" and source_rpm.endswith(".src.rpm"):
            # name-version-release.src.rpm; the name itself may contain dashes.
            pieces = source_rpm.removesuffix(".src.rpm").rsplit("-", 2)
            if len(pieces) == 3:
                source, source_version = pieces[0], f"{pieces[1]}-{pieces[2]}"
        arch = "" if arch == "(none)" else arch
        out.append(Package("rpm", name, evr, arch, source, source_version))
    return sorted(out, key=_by_name)


class RpmSource(SoftwareSource):
    manager = "rpm"
    _DB_DIRS = (Path("/var/lib/rpm"), Path("/usr/lib/sysimage/rpm"))

    def present(self) -> bool:
        return shutil.which("rpm") is not None

    def signature(self) -> Signature | None:
        files: list[Path] = []
        for db in self._DB_DIRS:
            if db.is_dir():
                files.append(db)
                files.extend(db.iterdir())  # a handful of files (Packages, rpmdb.sqlite)
        return file_signature(files)

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        rpm = shutil.which("rpm")
        if rpm is None:
            return []
        argv = [rpm, "-qa", "--queryformat", _RPM_QUERY]
        return parse_rpm_query(run_command(argv, timeout=self.timeout, stop=stop))


# ---- snap ------------------------------------------------------------------------------


def parse_snap_list(text: str) -> list[Package]:
    """Parse ``snap list`` (Name Version Rev Tracking Publisher Notes)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []  # "No snaps are installed yet" goes to stderr
    if lines[0].split()[:3] != ["Name", "Version", "Rev"]:
        raise SoftwareReadError(f"snap list: unexpected header: {lines[0]!r}")
    out: list[Package] = []
    for line in lines[1:]:
        cols = line.split()
        if len(cols) < 3:
            raise SoftwareReadError(f"snap list: unexpected line: {line!r}")
        out.append(Package("snap", cols[0], cols[1], "", cols[0], cols[1]))
    return sorted(out, key=_by_name)


class SnapSource(SoftwareSource):
    manager = "snap"

    def present(self) -> bool:
        return shutil.which("snap") is not None

    def signature(self) -> Signature | None:
        # Installing, refreshing or removing a snap adds or removes a .snap file and
        # a mount point; snapd's state.json changes far more often, so it is not used.
        return file_signature([Path("/var/lib/snapd/snaps"), Path("/snap")])

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        snap = shutil.which("snap")
        if snap is None:
            return []
        return parse_snap_list(run_command([snap, "list"], timeout=self.timeout, stop=stop))


# ---- flatpak ---------------------------------------------------------------------------

_FLATPAK_COLUMNS = "application,version,arch,branch"


def parse_flatpak_list(text: str) -> list[Package]:
    """Parse ``flatpak list --app --columns=application,version,arch,branch``.

    Rows are tab-separated; a header row (printed on a terminal) is skipped. An app
    without a version is identified by its branch ("stable").
    """
    out: list[Package] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split("\t")
        if cols[0] == "Application ID":
            continue
        if len(cols) != 4:
            raise SoftwareReadError(f"flatpak list: unexpected line: {line!r}")
        app, version, arch, branch = cols
        version = version or branch
        out.append(Package("flatpak", app, version, arch, app, version))
    return sorted(out, key=_by_name)


class FlatpakSource(SoftwareSource):
    manager = "flatpak"

    def present(self) -> bool:
        return shutil.which("flatpak") is not None

    def signature(self) -> Signature | None:
        # flatpak touches .changed in an installation after every change to it.
        return file_signature([Path("/var/lib/flatpak/.changed"), Path("/var/lib/flatpak/app")])

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        flatpak = shutil.which("flatpak")
        if flatpak is None:
            return []
        argv = [flatpak, "list", "--app", f"--columns={_FLATPAK_COLUMNS}"]
        return parse_flatpak_list(run_command(argv, timeout=self.timeout, stop=stop))


# The language ecosystems (pypi, npm) are read by language_packages; the inventory
# collector builds those with the extra directories its settings name.
SOURCES: dict[Manager, type[SoftwareSource]] = {
    "dpkg": DpkgSource,
    "rpm": RpmSource,
    "snap": SnapSource,
    "flatpak": FlatpakSource,
}


# ---- version order ---------------------------------------------------------------------


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _dpkg_order(c: str) -> int:
    if _is_digit(c):
        return 0
    if ("a" <= c <= "z") or ("A" <= c <= "Z"):
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256 if c else 0


def _dpkg_verrevcmp(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or revision (lib/dpkg/version.c)."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _is_digit(a[i])) or (j < len(b) and not _is_digit(b[j])):
            ac = _dpkg_order(a[i] if i < len(a) else "")
            bc = _dpkg_order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        di = i
        while i < len(a) and _is_digit(a[i]):
            i += 1
        dj = j
        while j < len(b) and _is_digit(b[j]):
            j += 1
        na, nb = int(a[di:i] or "0"), int(b[dj:j] or "0")
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _split_dpkg_version(v: str) -> tuple[int, str, str]:
    epoch, sep, rest = v.partition(":")
    if not sep:
        epoch, rest = "0", v
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return (int(epoch) if epoch.isdecimal() else 0, upstream, revision)


def compare_dpkg_versions(a: str, b: str) -> int:
    """Negative, 0 or positive as Debian version ``a`` sorts before, with or after ``b``."""
    ea, ua, ra = _split_dpkg_version(a)
    eb, ub, rb = _split_dpkg_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _dpkg_verrevcmp(ua, ub) or _dpkg_verrevcmp(ra, rb)


def _rpm_segments(v: str) -> Iterator[str]:
    """rpmvercmp's tokens: '~', '^', and runs of ASCII digits or letters."""
    i = 0
    while i < len(v):
        c = v[i]
        if c in "~^":
            yield c
            i += 1
        elif c.isascii() and c.isalnum():
            kind = c.isdigit()
            j = i
            while j < len(v) and v[j].isascii() and v[j].isalnum() and v[j].isdigit() == kind:
                j += 1
            yield v[i:j]
            i = j
        else:
            i += 1  # any other character only separates segments


def compare_rpm_version_strings(a: str, b: str) -> int:
    """rpm's rpmvercmp: -1, 0 or 1 as version ``a`` is older, the same or newer."""
    if a == b:
        return 0
    sa, sb = list(_rpm_segments(a)), list(_rpm_segments(b))
    for i in range(max(len(sa), len(sb))):
        x = sa[i] if i < len(sa) else ""
        y = sb[i] if i < len(sb) else ""
        if x == "~" or y == "~":  # tilde sorts before everything, even the end
            if x != y:
                return -1 if x == "~" else 1
            continue
        if x == "^" or y == "^":  # caret sorts after the end but before anything else
            if not x:
                return -1
            if not y:
                return 1
            if x != y:
                return 1 if y == "^" else -1
            continue
        if not x or not y:
            return 1 if x else (-1 if y else 0)
        if x[0].isdigit() != y[0].isdigit():
            return 1 if x[0].isdigit() else -1
        if x[0].isdigit():
            x, y = x.lstrip("0"), y.lstrip("0")
            if len(x) != len(y):
                return 1 if len(x) > len(y) else -1
        if x != y:
            return 1 if x > y else -1
    return 0


def _split_rpm_evr(v: str) -> tuple[int, str, str]:
    epoch, sep, rest = v.partition(":")
    if not sep or not epoch.isdecimal():
        epoch, rest = "0", v
    version, _, release = rest.rpartition("-")
    return (int(epoch), version or rest, release if version else "")


def compare_rpm_versions(a: str, b: str) -> int:
    """Compare rpm ``[epoch:]version-release`` strings: -1, 0 or 1."""
    ea, va, ra = _split_rpm_evr(a)
    eb, vb, rb = _split_rpm_evr(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return compare_rpm_version_strings(va, vb) or compare_rpm_version_strings(ra, rb)
