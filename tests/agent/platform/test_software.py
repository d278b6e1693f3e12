"""Installed-software readers, against this machine's real dpkg database and tools.

dpkg is real here (Debian): its database is read and checked against ``dpkg-query``,
and our version order against ``dpkg --compare-versions``. rpm, snap and flatpak are
not installed on this machine, so their output parsers are tested on recorded output
of the real commands, run through real stand-in executables on PATH (so the
subprocess path — exit codes, stderr, timeouts — is the real one too).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.software import (
    DpkgSource,
    FlatpakSource,
    RpmSource,
    SnapSource,
    SoftwareReadError,
    compare_dpkg_versions,
    compare_rpm_version_strings,
    compare_rpm_versions,
    parse_dpkg_status,
    parse_flatpak_list,
    parse_rpm_query,
    parse_snap_list,
    run_command,
)
from sekimori.protocol.events.inventory import Package


def _stand_in(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


@pytest.fixture
def only_stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the test's stand-in commands (plus /bin for sh, cat, sleep)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


# ---- dpkg, real ------------------------------------------------------------------------


def test_dpkg_database_matches_dpkg_query() -> None:
    """Every package dpkg-query calls installed, with the same version and source."""
    ours = {(p.name, p.architecture): p for p in DpkgSource().read()}
    out = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\t${Architecture}\t${Version}\t${source:Package}\t"
            "${source:Version}\t${db:Status-Status}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = {}
    for line in out.splitlines():
        name, arch, version, source, source_version, status = line.split("\t")
        if status not in ("not-installed", "config-files"):
            theirs[(name, arch)] = Package("dpkg", name, version, arch, source, source_version)
    assert ours == theirs
    assert ours[("dpkg", ours_arch(ours, "dpkg"))].version
    python3 = ours[("python3", ours_arch(ours, "python3"))]
    assert python3.source == "python3-defaults"
    assert python3.version.startswith("3.")


def ours_arch(packages: dict[tuple[str, str], Package], name: str) -> str:
    (arch,) = [a for n, a in packages if n == name]
    return arch


def test_dpkg_signature_is_cheap_and_stable() -> None:
    source = DpkgSource()
    assert source.present()
    first = source.signature()
    assert first is not None
    assert source.signature() == first


def test_dpkg_journal_overrides_status(tmp_path: Path) -> None:
    """dpkg's updates/ journal (recorded format: it exists only during a dpkg run).

    A journal entry supersedes the status entry, in numeric order: here ``foo`` is
    upgraded by 0000 then removed-with-config by 0001, and ``bar`` newly unpacked.
    """
    (tmp_path / "updates").mkdir()
    (tmp_path / "status").write_text(
        "Package: foo\nStatus: install ok installed\nPriority: optional\n"
        "Architecture: amd64\nVersion: 1.0-1\nDescription: foo\n multi-line\n .\n end\n\n"
        "Package: keep\nStatus: install ok installed\nArchitecture: all\n"
        "Source: keep-src (2:0.9-3)\nVersion: 2:0.9-3+b1\n"
    )
    (tmp_path / "updates/0000").write_text(
        "Package: foo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.1-1\n"
    )
    (tmp_path / "updates/0001").write_text(
        "Package: foo\nStatus: deinstall ok config-files\nArchitecture: amd64\n"
        "Version: 1.1-1\n\n"
        "Package: bar\nStatus: install ok unpacked\nArchitecture: arm64\nVersion: 3\n"
    )
    (tmp_path / "updates/tmp.i").write_text("Package: half-written\n")
    # While dpkg is at work (records just written, one still "unpacked"), the read is
    # refused, so a half-written record is never reported...
    with pytest.raises(SoftwareReadError, match="in progress"):
        DpkgSource(admin_dir=tmp_path).read()
    # ...but an operation interrupted long ago is read as the database says.
    past = time.time() - 120
    for path in (tmp_path / "status", *(tmp_path / "updates").iterdir()):
        os.utime(path, (past, past))
    packages = DpkgSource(admin_dir=tmp_path).read()
    assert packages == [
        Package("dpkg", "bar", "3", "arm64", "bar", "3"),
        Package("dpkg", "keep", "2:0.9-3+b1", "all", "keep-src", "2:0.9-3"),
    ]


def test_dpkg_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SoftwareReadError, match=r"dpkg: .*status does not exist"):
        DpkgSource(admin_dir=tmp_path).read()
    (tmp_path / "status").write_text("Version: 1\nArchitecture: all\n")
    with pytest.raises(SoftwareReadError, match="stanza without Package/Status"):
        DpkgSource(admin_dir=tmp_path).read()
    assert parse_dpkg_status("Package: gone\nStatus: purge ok not-installed\n") == {
        ("gone", ""): None
    }


DPKG_VERSIONS = [
    "1.0",
    "1.0-1",
    "1.0-1+b1",
    "1.0~rc1-1",
    "1.0~~a",
    "1.0~",
    "1.0+dfsg-2",
    "1.00",
    "1.0.1",
    "1:0.9",
    "2:1.0",
    "1.0a",
    "1.0-1ubuntu1",
    "10",
    "9.9",
    "0.0.0-0",
    "1.2.3+git20240101.abc-3~deb12u1",
]


def test_dpkg_version_order_agrees_with_dpkg() -> None:
    for a, b in itertools.permutations(DPKG_VERSIONS, 2):
        ours = compare_dpkg_versions(a, b)
        real = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False)
        assert (ours < 0) == (real.returncode == 0), (a, b)
        same = subprocess.run(["dpkg", "--compare-versions", a, "eq", b], check=False)
        assert (ours == 0) == (same.returncode == 0), (a, b)


# ---- rpm: recorded output, real stand-in command -------------------------------------

# Recorded from `rpm -qa --queryformat` with the query format RpmSource uses
# (a Fedora/RHEL host): two kernels at once, an epoch, and gpg-pubkey (no arch/source).
RPM_OUTPUT = (
    "bash\t(none)\t5.1.8\t6.el9\tx86_64\tbash-5.1.8-6.el9.src.rpm\n"
    "kernel-core\t(none)\t5.14.0\t362.8.1.el9_3\tx86_64\tkernel-5.14.0-362.8.1.el9_3.src.rpm\n"
    "kernel-core\t(none)\t5.14.0\t284.11.1.el9_2\tx86_64\tkernel-5.14.0-284.11.1.el9_2.src.rpm\n"
    "openssl-libs\t1\t3.0.7\t24.el9\tx86_64\topenssl-3.0.7-24.el9.src.rpm\n"
    "gpg-pubkey\t(none)\tfd431d51\t4ae0493b\t(none)\t(none)\n"
)


def test_parse_rpm_query() -> None:
    packages = parse_rpm_query(RPM_OUTPUT)
    assert Package("rpm", "bash", "5.1.8-6.el9", "x86_64", "bash", "5.1.8-6.el9") in packages
    assert (
        Package("rpm", "openssl-libs", "1:3.0.7-24.el9", "x86_64", "openssl", "3.0.7-24.el9")
        in packages
    )
    assert [p.version for p in packages if p.name == "kernel-core"] == [
        "5.14.0-284.11.1.el9_2",
        "5.14.0-362.8.1.el9_3",
    ]
    assert {p.source for p in packages if p.name == "kernel-core"} == {"kernel"}
    assert Package("rpm", "gpg-pubkey", "fd431d51-4ae0493b", "", "gpg-pubkey",
                   "fd431d51-4ae0493b") in packages  # fmt: skip
    with pytest.raises(SoftwareReadError, match="unexpected query line"):
        parse_rpm_query("bash\t5.1\n")


def test_rpm_is_asked_only_where_present(only_stand_ins: Path) -> None:
    source = RpmSource()
    assert not source.present()
    assert source.read() == []
    (only_stand_ins / "rpm.out").write_text(RPM_OUTPUT)
    # The stand-in checks it is called the way the real rpm would be.
    _stand_in(
        only_stand_ins,
        "rpm",
        '[ "$1" = -qa ] && [ "$2" = --queryformat ] || exit 9\n'
        f'exec cat "{only_stand_ins}/rpm.out"\n',
    )
    assert source.present()
    assert source.read() == parse_rpm_query(RPM_OUTPUT)


# rpm's own comparison table (tests/rpmvercmp.at in rpm), recorded because rpm is not
# installed here: (a, b, rpmvercmp(a, b)).
RPMVERCMP = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0", "1.0", 1), ("2.0.1", "2.0.1", 0),
    ("2.0", "2.0.1", -1), ("2.0.1", "2.0", 1), ("2.0.1a", "2.0.1a", 0),
    ("2.0.1a", "2.0.1", 1), ("2.0.1", "2.0.1a", -1), ("5.5p1", "5.5p1", 0),
    ("5.5p1", "5.5p2", -1), ("5.5p2", "5.5p1", 1), ("5.5p10", "5.5p10", 0),
    ("5.5p1", "5.5p10", -1), ("5.5p10", "5.5p1", 1), ("10xyz", "10.1xyz", -1),
    ("10.1xyz", "10xyz", 1), ("xyz10", "xyz10", 0), ("xyz10", "xyz10.1", -1),
    ("xyz10.1", "xyz10", 1), ("xyz.4", "xyz.4", 0), ("xyz.4", "8", -1), ("8", "xyz.4", 1),
    ("xyz.4", "2", -1), ("2", "xyz.4", 1), ("5.5p2", "5.6p1", -1), ("5.6p1", "5.5p2", 1),
    ("5.6p1", "6.5p1", -1), ("6.5p1", "5.6p1", 1), ("6.0.rc1", "6.0", 1),
    ("6.0", "6.0.rc1", -1), ("10b2", "10a1", 1), ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0), ("1.0a", "1.0aa", -1), ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0), ("10.0001", "10.1", 0), ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1), ("10.0039", "10.0001", 1), ("4.999.9", "5.0", -1),
    ("5.0", "4.999.9", 1), ("20101121", "20101121", 0), ("20101121", "20101122", -1),
    ("20101122", "20101121", 1), ("2_0", "2_0", 0), ("2.0", "2_0", 0), ("2_0", "2.0", 0),
    ("a", "a", 0), ("a+", "a+", 0), ("a+", "a_", 0), ("a_", "a+", 0), ("+a", "+a", 0),
    ("+a", "_a", 0), ("_a", "+a", 0), ("+_", "+_", 0), ("_+", "+_", 0), ("_+", "_+", 0),
    ("+", "_", 0), ("_", "+", 0), ("1.0~rc1", "1.0~rc1", 0), ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0~rc1", 1), ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc2", "1.0~rc1", 1),
    ("1.0~rc1~git123", "1.0~rc1~git123", 0), ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0~rc1", "1.0~rc1~git123", 1), ("1.0^", "1.0", 1), ("1.0^git1", "1.0", 1),
    ("1.0^git1", "1.0^git2", -1), ("1.0^git1", "1.01", -1), ("1.0^20160101", "1.0.1", -1),
    ("1.0^20160101^git1", "1.0^20160101", 1), ("1.0^20160102", "1.0^20160101^git1", 1),
    ("1.0~rc1^git1", "1.0~rc1", 1), ("1.0^git1~pre", "1.0^git1", -1),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b", "expected"), RPMVERCMP)
def test_rpm_version_order_follows_rpm(a: str, b: str, expected: int) -> None:
    assert compare_rpm_version_strings(a, b) == expected


def test_rpm_epoch_version_release() -> None:
    assert compare_rpm_versions("1:1.0-1", "2.0-1") == 1
    assert compare_rpm_versions("1.0-2", "1.0-10") == -1
    assert compare_rpm_versions("0:1.0-1", "1.0-1") == 0


# ---- snap and flatpak: recorded output ------------------------------------------------

# Recorded `snap list` on Ubuntu 22.04 (publisher marks included).
SNAP_OUTPUT = """\
Name               Version           Rev    Tracking         Publisher   Notes
bare               1.0               5      latest/stable    canonical✓  base
core22             20240111          1122   latest/stable    canonical✓  base
firefox            122.0-2           3728   latest/stable/…  mozilla✓    -
snapd              2.61.1            20671  latest/stable    canonical✓  snapd
"""


def test_parse_snap_list() -> None:
    packages = parse_snap_list(SNAP_OUTPUT)
    assert [p.name for p in packages] == ["bare", "core22", "firefox", "snapd"]
    assert packages[2] == Package("snap", "firefox", "122.0-2", "", "firefox", "122.0-2")
    assert parse_snap_list("") == []
    with pytest.raises(SoftwareReadError, match="unexpected header"):
        parse_snap_list("error: cannot list snaps\n")


# Recorded `flatpak list --app --columns=application,version,arch,branch` (not a tty:
# no header); one app without a version.
FLATPAK_OUTPUT = (
    "org.mozilla.firefox\t122.0\tx86_64\tstable\n"
    "org.libreoffice.LibreOffice\t7.6.4.1\tx86_64\tstable\n"
    "com.example.NoVersion\t\tx86_64\tbeta\n"
)


def test_parse_flatpak_list() -> None:
    packages = parse_flatpak_list(
        "Application ID\tVersion\tArchitecture\tBranch\n" + FLATPAK_OUTPUT
    )
    assert len(packages) == 3
    assert packages[0] == Package("flatpak", "com.example.NoVersion", "beta", "x86_64",
                                  "com.example.NoVersion", "beta")  # fmt: skip
    assert Package("flatpak", "org.mozilla.firefox", "122.0", "x86_64", "org.mozilla.firefox",
                   "122.0") in packages  # fmt: skip
    with pytest.raises(SoftwareReadError, match="unexpected line"):
        parse_flatpak_list("only-one-column\n")


def test_snap_and_flatpak_through_their_commands(only_stand_ins: Path) -> None:
    assert not SnapSource().present()
    assert not FlatpakSource().present()
    (only_stand_ins / "snap.out").write_text(SNAP_OUTPUT)
    (only_stand_ins / "flatpak.out").write_text(FLATPAK_OUTPUT)
    _stand_in(
        only_stand_ins, "snap", f'[ "$1" = list ] || exit 9\nexec cat "{only_stand_ins}/snap.out"\n'
    )
    _stand_in(
        only_stand_ins,
        "flatpak",
        '[ "$1 $2 $3" = "list --app --columns=application,version,arch,branch" ] || exit 9\n'
        f'exec cat "{only_stand_ins}/flatpak.out"\n',
    )
    assert SnapSource().read() == parse_snap_list(SNAP_OUTPUT)
    assert FlatpakSource().read() == parse_flatpak_list(FLATPAK_OUTPUT)


# ---- running commands ------------------------------------------------------------------


def test_failing_command_reports_exit_code_and_stderr(only_stand_ins: Path) -> None:
    tool = _stand_in(
        only_stand_ins,
        "snap",
        'echo "warning: ignore me" >&2\necho "error: cannot communicate with server" >&2\nexit 1\n',
    )
    with pytest.raises(
        SoftwareReadError, match=r"snap list exited with 1: error: cannot communicate with server"
    ):
        run_command([str(tool), "list"], timeout=10)
    with pytest.raises(SoftwareReadError, match=r"exited with 1: error: cannot communicate"):
        SnapSource().read()


def test_hung_command_is_killed_at_the_time_limit(only_stand_ins: Path) -> None:
    tool = _stand_in(only_stand_ins, "rpm", "exec sleep 60\n")
    started = time.monotonic()
    with pytest.raises(SoftwareReadError, match=r"rpm -qa: timed out after 1 s"):
        run_command([str(tool), "-qa"], timeout=1)
    assert time.monotonic() - started < 30  # killed, not waited for


def test_stop_interrupts_a_command(only_stand_ins: Path) -> None:
    tool = _stand_in(only_stand_ins, "flatpak", "exec sleep 60\n")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(SoftwareReadError, match="stopped"):
        run_command([str(tool), "list"], timeout=120, stop=stop)
    assert stop.is_set()
