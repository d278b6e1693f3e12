"""System-wide packages of the language ecosystems, read from their metadata files:
Python distributions ("pypi") and global Node.js packages ("npm").

pypi: every ``*.dist-info`` (its ``METADATA``) and ``*.egg-info`` (a directory with
``PKG-INFO``, or that file itself) directly in the system's site/dist-packages
directories (``PYPI_ROOTS``) and in extra directories (shell patterns allowed, e.g. a
venv's ``lib/python3.*/site-packages``). Names are normalised as in PEP 503. A
distribution that dpkg installed (its dist-info/egg-info is listed in
``/var/lib/dpkg/info/*.list``) is left out: dpkg reports it as the Debian package
(``python3-requests``), and that record is the one vulnerability matching must use —
Debian backports fixes without changing the upstream version in the dist-info, so
matching that version against PyPI advisories would call patched PCs vulnerable.

npm: every package directory (a ``package.json`` with name and version; scoped
packages under their ``@scope`` directory) in the global ``node_modules`` directories
(``NPM_ROOTS``) and extra ones, and in the ``node_modules`` nested inside those
packages (npm nests a dependency when two versions of it are needed). A symlinked
package (``npm link``) is reported but not descended into. A directory without
``package.json`` is not a package and is passed over silently.

Cost: a read lists the directories and stats each metadata file; a file is parsed only
when it is new or changed (cache by path, mtime, size and inode), so a full round over
a few thousand parsed distributions is a few thousand ``stat`` calls. The signature
is the times of the root directories (and npm's scope directories): installing,
removing or upgrading a package adds, removes or renames an entry there. Changes deep
inside a package (a nested dependency replaced by hand) are seen on the full rounds.

A metadata file that cannot be read or parsed skips that one entry, with a line in
``skipped``; it never fails the manager or the agent. A root directory that exists but
cannot be listed fails the read (``SoftwareReadError``): its packages would otherwise
look removed.
"""

from __future__ import annotations

import email.parser
import glob
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from sekimori.agent.platform.linux.software import (
    Signature,
    SoftwareReadError,
    SoftwareSource,
    file_signature,
)
from sekimori.protocol.events.inventory import Package

__all__ = [
    "NPM_ROOTS",
    "PYPI_ROOTS",
    "DpkgOwnedPaths",
    "NpmSource",
    "PypiSource",
    "compare_npm_versions",
    "compare_pypi_versions",
    "normalize_pypi_name",
    "parse_package_json",
    "parse_python_metadata",
]

PYPI_ROOTS: tuple[str, ...] = (
    "/usr/lib/python3/dist-packages",  # Debian and Ubuntu: dpkg's
    "/usr/lib/python3.*/site-packages",  # Fedora, RHEL, Arch, SUSE: the distribution's
    "/usr/lib64/python3.*/site-packages",
    "/usr/local/lib/python3.*/dist-packages",  # Debian and Ubuntu: `sudo pip install`
    "/usr/local/lib/python3.*/site-packages",
    "/usr/local/lib64/python3.*/site-packages",
)
NPM_ROOTS: tuple[str, ...] = ("/usr/lib/node_modules", "/usr/local/lib/node_modules")

# Bounds against a pathological file or tree; real metadata is a few KiB.
_MAX_HEADER_BYTES = 256 * 1024
_MAX_PACKAGE_JSON_BYTES = 4 * 1024 * 1024
_MAX_NPM_DEPTH = 16
_STOP_CHECK_EVERY = 256

_PYPI_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_NPM_NAME = re.compile(r"(?:@[A-Za-z0-9._~-]+/)?[A-Za-z0-9._~-]+")
# Printable ASCII without spaces: what PEP 440, legacy and SemVer versions are made of.
_VERSION = re.compile(r"[!-~]{1,128}")


class _Broken(Exception):
    """A metadata file that cannot be used; the message says why."""


def _short(value: str) -> str:
    return repr(value[:60] + ("…" if len(value) > 60 else ""))


# ---- pypi ------------------------------------------------------------------------------


def normalize_pypi_name(name: str) -> str:
    """PEP 503: lower case, each run of ``-``, ``_`` and ``.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_python_metadata(data: bytes) -> Package:
    """The package a METADATA / PKG-INFO text (its header part is enough) describes.

    Raises ``ValueError`` when it has no valid Name or Version.
    """
    text = data.decode("utf-8", "replace")
    headers = email.parser.HeaderParser().parsestr(text)
    name = str(headers.get("Name", "")).strip()
    version = str(headers.get("Version", "")).strip()
    if not _PYPI_NAME.fullmatch(name):
        raise ValueError(f"no valid Name ({_short(name)})")
    if not _VERSION.fullmatch(version):
        raise ValueError(f"no valid Version ({_short(version)})")
    name = normalize_pypi_name(name)
    return Package("pypi", name, version, "", name, version)


def _read_headers(path: str) -> bytes:
    """The header part of an RFC 822-style file: up to its first empty line.

    METADATA carries the package's whole description after the headers, which can be
    hundreds of KiB; only the headers are read.
    """
    data = b""
    with _open_file(path) as f:
        while len(data) <= _MAX_HEADER_BYTES:
            chunk = f.read(16384)
            if not chunk:
                return data
            data += chunk
            for blank in (b"\n\n", b"\r\n\r\n"):
                end = data.find(blank)
                if end >= 0:
                    return data[: end + 1]
    raise _Broken(f"headers longer than {_MAX_HEADER_BYTES} bytes")


def _load_python_metadata(path: str) -> Package:
    try:
        return parse_python_metadata(_read_headers(path))
    except ValueError as exc:
        raise _Broken(f"{os.path.basename(path)}: {exc}") from None


class DpkgOwnedPaths:
    """The dist-info/egg-info paths dpkg's packages installed, from its file lists.

    Read again only when ``/var/lib/dpkg/info`` changes (dpkg replaces a list by
    rename). The lists are mapped, not read: ~7 MB of them on a desktop, copied into
    the heap, left ~0.9 MiB of RSS behind in the agent; mapped and searched in place
    (only a few mention "-info") they cost ~0.1 s and ~0.2 MiB.
    """

    _LINE = re.compile(rb"^/.*\.(?:dist|egg)-info$", re.MULTILINE)

    def __init__(self, info_dir: Path = Path("/var/lib/dpkg/info")) -> None:
        self.info_dir = info_dir
        self._key: tuple[int, int] | None = None
        self._paths: frozenset[str] = frozenset()

    def paths(self) -> frozenset[str]:
        try:
            st = self.info_dir.stat()
        except OSError:
            return frozenset()  # no dpkg on this PC
        key = (st.st_mtime_ns, st.st_ino)
        if key == self._key:
            return self._paths
        found: set[str] = set()
        complete = True
        for entry in glob.glob(os.path.join(glob.escape(str(self.info_dir)), "*.list")):
            try:
                found.update(self._search(entry))
            except OSError:
                complete = False  # dpkg replacing it right now: try again next read
        self._paths = frozenset(found)
        self._key = key if complete else None
        return self._paths

    @classmethod
    def _search(cls, path: str) -> list[str]:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return []  # mmap refuses an empty file
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
                if text.find(b"-info") < 0:
                    return []
                return [m.decode("utf-8", "replace") for m in cls._LINE.findall(text)]


# ---- npm -------------------------------------------------------------------------------


class _PackageJson(msgspec.Struct):
    """The two fields of package.json that name the package (others are ignored)."""

    name: str = ""
    version: str = ""


_package_json_decoder = msgspec.json.Decoder(_PackageJson)


def parse_package_json(data: bytes) -> Package:
    """The package a package.json describes. Raises ``ValueError`` when it is not a
    JSON object with a valid string name and version."""
    try:
        fields = _package_json_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(f"not valid JSON for a package: {exc}") from None
    name, version = fields.name.strip(), fields.version.strip()
    if len(name) > 214 or not _NPM_NAME.fullmatch(name):
        raise ValueError(f"no valid name ({_short(name)})")
    if not _VERSION.fullmatch(version):
        raise ValueError(f"no valid version ({_short(version)})")
    return Package("npm", name, version, "", name, version)


def _load_package_json(path: str) -> Package:
    with _open_file(path) as f:
        data = f.read(_MAX_PACKAGE_JSON_BYTES + 1)
    if len(data) > _MAX_PACKAGE_JSON_BYTES:
        raise _Broken(f"package.json larger than {_MAX_PACKAGE_JSON_BYTES} bytes")
    try:
        return parse_package_json(data)
    except ValueError as exc:
        raise _Broken(f"package.json: {exc}") from None


# ---- shared ----------------------------------------------------------------------------


def _open_file(path: str) -> BinaryIO:
    """Open a metadata file for reading, refusing a symlink in its last component.

    The agent reads as root in directories a user may be able to write (a venv in
    ``pypi_paths``): a METADATA symlinked to a root-only file would otherwise have its
    "Name:"/"Version:" lines reported. No real distribution ships its metadata file as
    a symlink (a symlinked dist-info or package directory is still followed).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


_StatKey = tuple[int, int, int]


class _MetadataCache:
    """Parsed metadata files by path, reused while (mtime, size, inode) stays the same.

    Entries not looked up during a read are dropped at its end, so the cache holds
    what is installed and nothing more.
    """

    def __init__(self, load: Callable[[str], Package]) -> None:
        self._load = load
        self._old: dict[str, tuple[_StatKey, Package | str]] = {}
        self._new: dict[str, tuple[_StatKey, Package | str]] = {}

    def get(self, path: str) -> Package | str | None:
        """The package, a reason it cannot be had, or None when the file is absent."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return f"cannot read {os.path.basename(path)}: {exc.strerror}"
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._old.get(path)
        if hit is not None and hit[0] == key:
            result = hit[1]
        else:
            try:
                result = self._load(path)
            except _Broken as exc:
                result = str(exc)
            except FileNotFoundError:
                return None  # removed between the stat and the read
            except OSError as exc:
                result = f"cannot read {os.path.basename(path)}: {exc.strerror}"
        self._new[path] = (key, result)
        return result

    def finish(self) -> None:
        self._old, self._new = self._new, {}


def _existing_dirs(patterns: Sequence[str]) -> list[str]:
    """The directories the patterns match, each once (by real path), in order."""
    out: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)):
            real = os.path.realpath(match)
            if real not in seen and os.path.isdir(match):
                seen.add(real)
                out.append(match)
    return out


def _list_root(root: str, manager: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(root) as entries:
            return sorted(entries, key=lambda e: e.name)
    except FileNotFoundError:
        return []  # removed since it was found: nothing installed there now
    except OSError as exc:
        raise SoftwareReadError(f"{manager}: cannot list {root}: {exc.strerror}") from None


def _finish(found: dict[tuple[str, str], Package]) -> list[Package]:
    return [found[k] for k in sorted(found)]


class _Stopper:
    """Checks ``stop`` every few entries, raising SoftwareReadError when set."""

    def __init__(self, manager: str, stop: threading.Event | None) -> None:
        self.manager, self.stop, self.count = manager, stop, 0

    def tick(self) -> None:
        self.count += 1
        if self.stop is not None and self.count % _STOP_CHECK_EVERY == 0 and self.stop.is_set():
            raise SoftwareReadError(f"{self.manager}: stopped")


# ---- the sources -----------------------------------------------------------------------


class PypiSource(SoftwareSource):
    """Python distributions in the system's site/dist-packages (see the module doc)."""

    manager = "pypi"

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        roots: Sequence[str] = PYPI_ROOTS,
        extra_roots: Sequence[str] = (),
        dpkg_info_dir: Path | None = Path("/var/lib/dpkg/info"),
    ) -> None:
        super().__init__(timeout=timeout)
        self.patterns = [*roots, *extra_roots]
        self._dpkg = DpkgOwnedPaths(dpkg_info_dir) if dpkg_info_dir is not None else None
        self._cache = _MetadataCache(_load_python_metadata)

    def present(self) -> bool:
        return bool(_existing_dirs(self.patterns))

    def signature(self) -> Signature | None:
        return file_signature([Path(d) for d in _existing_dirs(self.patterns)])

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        owned = self._dpkg.paths() if self._dpkg is not None else frozenset()
        found: dict[tuple[str, str], Package] = {}
        skipped: list[str] = []
        stopper = _Stopper("pypi", stop)
        for root in _existing_dirs(self.patterns):
            for entry in _list_root(root, "pypi"):
                if entry.path in owned:
                    continue
                metadata = self._metadata_file(entry)
                if metadata is None:
                    continue
                stopper.tick()
                result = self._cache.get(metadata)
                if isinstance(result, Package):
                    found[(result.name, result.version)] = result
                else:
                    why = result if result is not None else f"no {os.path.basename(metadata)}"
                    skipped.append(f"{entry.path}: {why}")
        self._cache.finish()
        self.skipped = skipped
        return _finish(found)

    @staticmethod
    def _metadata_file(entry: os.DirEntry[str]) -> str | None:
        if entry.name.endswith(".dist-info"):
            return os.path.join(entry.path, "METADATA")
        if entry.name.endswith(".egg-info"):
            is_dir = entry.is_dir()
            return os.path.join(entry.path, "PKG-INFO") if is_dir else entry.path
        return None


class NpmSource(SoftwareSource):
    """Global Node.js packages and their nested dependencies (see the module doc)."""

    manager = "npm"

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        roots: Sequence[str] = NPM_ROOTS,
        extra_roots: Sequence[str] = (),
    ) -> None:
        super().__init__(timeout=timeout)
        self.patterns = [*roots, *extra_roots]
        self._cache = _MetadataCache(_load_package_json)

    def present(self) -> bool:
        return bool(_existing_dirs(self.patterns))

    def signature(self) -> Signature | None:
        paths: list[Path] = []
        for root in _existing_dirs(self.patterns):
            paths.append(Path(root))
            # A scoped package is installed into its scope's directory, not the root. An
            # unlistable root is left to read() to report (signature() never raises).
            scopes = self._list(root, [])
            paths += [Path(e.path) for e in scopes if e.name.startswith("@")]
        return file_signature(paths)

    def read(self, stop: threading.Event | None = None) -> list[Package]:
        found: dict[tuple[str, str], Package] = {}
        skipped: list[str] = []
        stopper = _Stopper("npm", stop)
        for root in _existing_dirs(self.patterns):
            top = _list_root(root, "npm")  # an unlistable root fails the read
            for package_dir in self._packages(top, skipped, depth=0):
                stopper.tick()
                result = self._cache.get(os.path.join(package_dir, "package.json"))
                if isinstance(result, Package):
                    found[(result.name, result.version)] = result
                elif result is not None:
                    skipped.append(f"{package_dir}: {result}")
        self._cache.finish()
        self.skipped = skipped
        return _finish(found)

    def _packages(
        self, entries: list[os.DirEntry[str]], skipped: list[str], *, depth: int
    ) -> Iterator[str]:
        """Package directories among a node_modules' entries, then their nested ones."""
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue  # .bin, .package-lock.json, .cache
            if entry.name.startswith("@"):
                scoped = self._list(entry.path, skipped)
                yield from self._packages(
                    [e for e in scoped if not e.name.startswith("@")], skipped, depth=depth
                )
                continue
            yield entry.path
            if entry.is_symlink() or depth + 1 >= _MAX_NPM_DEPTH:
                continue  # npm link: a checkout elsewhere, its node_modules not ours
            nested = os.path.join(entry.path, "node_modules")
            if os.path.isdir(nested) and not os.path.islink(nested):
                yield from self._packages(self._list(nested, skipped), skipped, depth=depth + 1)

    @staticmethod
    def _list(path: str, skipped: list[str]) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as entries:
                return sorted(entries, key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as exc:
            skipped.append(f"{path}: cannot list: {exc.strerror}")
            return []


# ---- version order ---------------------------------------------------------------------


def compare_pypi_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as PEP 440 version ``a`` sorts before, with or after ``b``.

    Raises ``ValueError`` when either is not a PEP 440 version (legacy versions such
    as "2004d" have no defined order).
    """
    # Imported here: the agent needs it only when a Python package changes version,
    # and keeping it out of the idle agent saves ~0.7 MiB of RSS.
    from packaging.version import Version  # noqa: PLC0415

    va, vb = Version(a), Version(b)  # InvalidVersion is a ValueError
    return (va > vb) - (va < vb)


_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


def _semver_key(v: str) -> tuple[tuple[int, int, int], tuple[tuple[int, int, str], ...] | None]:
    m = _SEMVER.fullmatch(v)
    if m is None:
        raise ValueError(f"not a SemVer version: {v!r}")
    core = (int(m[1]), int(m[2]), int(m[3]))
    if m[4] is None:
        return core, None
    # Numeric identifiers sort before alphanumeric ones, numbers by value.
    pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m[4].split("."))
    return core, pre


def compare_npm_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as SemVer 2.0 version ``a`` has lower, equal or higher precedence than
    ``b`` (build metadata ignored; a pre-release sorts before its release).

    Raises ``ValueError`` when either is not a SemVer version.
    """
    (ca, pa), (cb, pb) = _semver_key(a), _semver_key(b)
    if ca != cb:
        return -1 if ca < cb else 1
    if pa == pb:
        return 0
    if pa is None or pb is None:
        return 1 if pa is None else -1
    # A shorter pre-release list sorts first when all its identifiers are equal.
    return -1 if pa < pb else 1
