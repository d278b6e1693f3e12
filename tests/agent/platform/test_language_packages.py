"""Language-ecosystem packages (pypi, npm), against real files.

Trees of dist-info / egg-info / node_modules are built in temporary directories, and
this machine's real ones are read too: /usr/lib/python3/dist-packages (checked
against importlib.metadata and ``dpkg -S``) and /usr/lib/node_modules (checked against
``npm ls -g --all``, with the real npm's own ``semver`` module as the reference for
SemVer order). Broken metadata is made by hypothesis: it never breaks a scan.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekimori.agent.platform.linux.language_packages import (
    DpkgOwnedPaths,
    NpmSource,
    PypiSource,
    compare_npm_versions,
    compare_pypi_versions,
    normalize_pypi_name,
    parse_package_json,
    parse_python_metadata,
)
from sekimori.agent.platform.linux.software import SoftwareReadError
from sekimori.protocol.events.inventory import Package

REAL_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
REAL_NODE_MODULES = Path("/usr/lib/node_modules")
NPM_SEMVER = REAL_NODE_MODULES / "npm/node_modules/semver"


def pypi(name: str, version: str) -> Package:
    return Package("pypi", name, version, "", name, version)


def npm(name: str, version: str) -> Package:
    return Package("npm", name, version, "", name, version)


def dist_info(root: Path, name: str, version: str, *, body: str = "") -> Path:
    d = root / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\n{body}"
    )
    (d / "RECORD").write_text("")
    return d


def package_json(directory: Path, name: str, version: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "package.json").write_text(
        json.dumps({"name": name, "version": version, "dependencies": {"x": "^1"}})
    )
    return directory


def only(root: Path, **kwargs: Any) -> PypiSource:
    """A pypi reader of ``root`` alone, without the dpkg ownership check."""
    return PypiSource(roots=[str(root)], dpkg_info_dir=None, **kwargs)


# ---- pypi ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Django", "django"),
        ("zope.interface", "zope-interface"),
        ("typing_extensions", "typing-extensions"),
        ("Foo__-.Bar", "foo-bar"),
        ("ruamel.yaml.clib", "ruamel-yaml-clib"),
    ],
)
def test_names_are_normalised_as_in_pep_503(raw: str, normal: str) -> None:
    assert normalize_pypi_name(raw) == normal


def test_dist_info_and_egg_info_of_every_kind(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    # The description after the headers is not read (nor needed): a blank line ends them.
    dist_info(root, "Requests", "2.31.0", body="Version: 9.9.9\n" + "x" * 300_000)
    egg_dir = root / "PyYAML-6.0.egg-info"
    egg_dir.mkdir()
    (egg_dir / "PKG-INFO").write_text("Metadata-Version: 1.1\r\nName: PyYAML\r\nVersion: 6.0\r\n")
    (root / "zope.interface-5.5.2.egg-info").write_text(
        "Metadata-Version: 1.0\nName: zope.interface\nVersion: 5.5.2\n"
    )
    # Two locations holding one version, and a second version elsewhere.
    dist_info(root, "six", "1.16.0")
    dist_info(tmp_path / "venv", "six", "1.16.0")
    dist_info(tmp_path / "venv2", "six", "1.17.0")
    (root / "requests").mkdir()  # the import package itself: not metadata
    (root / "_distutils_hack.pth").write_text("")
    source = PypiSource(
        roots=[str(root)], extra_roots=[str(tmp_path / "venv*")], dpkg_info_dir=None
    )
    assert source.present()
    assert source.read() == [
        pypi("pyyaml", "6.0"),
        pypi("requests", "2.31.0"),
        pypi("six", "1.16.0"),
        pypi("six", "1.17.0"),
        pypi("zope-interface", "5.5.2"),
    ]
    assert source.skipped == []


def test_broken_entries_are_skipped_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "dist-packages"
    dist_info(root, "good", "1.0")
    (dist_info(root, "noversion", "1.0") / "METADATA").write_text("Name: noversion\n")
    (root / "nometadata-1.0.dist-info").mkdir()
    (dist_info(root, "badname", "1.0") / "METADATA").write_text("Name: bad name!\nVersion: 1\n")
    (dist_info(root, "binary", "1.0") / "METADATA").write_bytes(b"\xff\xfe\x00\x01garbage")
    (root / "empty.egg-info").write_text("")
    source = only(root)
    assert source.read() == [pypi("good", "1.0")]
    assert sorted(source.skipped) == [
        f"{root}/badname-1.0.dist-info: METADATA: no valid Name ('bad name!')",
        f"{root}/binary-1.0.dist-info: METADATA: no valid Name ('')",
        f"{root}/empty.egg-info: empty.egg-info: no valid Name ('')",
        f"{root}/nometadata-1.0.dist-info: no METADATA",
        f"{root}/noversion-1.0.dist-info: METADATA: no valid Version ('')",
    ]
    # Mended, the next read has it and no longer reports it.
    (root / "noversion-1.0.dist-info/METADATA").write_text("Name: noversion\nVersion: 1.0\n")
    assert pypi("noversion", "1.0") in source.read()
    assert len(source.skipped) == 4


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged account can enter (pytest's tmp_path is root's 0700)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d).chmod(0o755)
        yield Path(d)


def _unprivileged(script: str) -> Any:
    """Run ``script`` (which prints JSON) as an account without privileges: as nobody
    (setpriv) when the tests run as root, which reads and lists anything."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv = [*(prefix if os.geteuid() == 0 else []), sys.executable, "-c", script]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, cwd="/")
    return json.loads(out.stdout)


_READ_AS_NOBODY = """
import json
from sekimori.agent.platform.linux.language_packages import NpmSource, PypiSource
from sekimori.agent.platform.linux.software import SoftwareReadError
def attempt(source):
    try:
        return [p.name for p in source.read()], source.skipped
    except SoftwareReadError as exc:
        return "error", str(exc)
root = {root!r}
node = NpmSource(roots=[root])
print(json.dumps({{
    "pypi": attempt(PypiSource(roots=[root], dpkg_info_dir=None)),
    "npm_signature": node.signature() is not None,
    "npm": attempt(node),
}}))
"""


def test_an_unreadable_metadata_file_is_skipped(shared_dir: Path) -> None:
    root = shared_dir / "site-packages"
    (dist_info(root, "secret", "1.0") / "METADATA").chmod(0)
    dist_info(root, "public", "1.0")
    result = _unprivileged(_READ_AS_NOBODY.format(root=str(root)))
    why = "cannot read METADATA: Permission denied"
    assert result["pypi"] == [["public"], [f"{root}/secret-1.0.dist-info: {why}"]]


def test_a_symlinked_metadata_file_is_not_followed(tmp_path: Path) -> None:
    """A user who can write a venv the agent reads must not make it read other files."""
    root = tmp_path / "site-packages"
    secret = tmp_path / "root-only"
    secret.write_text("Name: secret-name\nVersion: 1.0\n")
    metadata = dist_info(root, "trick", "1.0") / "METADATA"
    metadata.unlink()
    metadata.symlink_to(secret)
    modules = tmp_path / "node_modules"
    (modules / "trick").mkdir(parents=True)
    (modules / "trick/package.json").symlink_to(secret)
    python, node = only(root), NpmSource(roots=[str(modules)])
    assert python.read() == []
    assert node.read() == []
    loop = "Too many levels of symbolic links"
    assert python.skipped == [f"{metadata.parent}: cannot read METADATA: {loop}"]
    assert node.skipped == [f"{modules}/trick: cannot read package.json: {loop}"]


def test_headers_without_end_are_bounded(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    d = dist_info(root, "huge", "1.0")
    (d / "METADATA").write_text("Name: huge\nVersion: 1.0\n" + "X-Junk: y\n" * 40_000)
    source = only(root)
    assert source.read() == []
    assert source.skipped == [f"{d}: headers longer than 262144 bytes"]


def test_metadata_is_parsed_again_only_when_its_file_changes(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    d = dist_info(root, "cached", "1.0")
    metadata = d / "METADATA"
    source = only(root)
    assert source.read() == [pypi("cached", "1.0")]
    # Same size and times (and inode): the cached result stands.
    st = metadata.stat()
    with metadata.open("r+") as f:
        f.write(metadata.read_text().replace("1.0", "2.0"))
    os.utime(metadata, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.read() == [pypi("cached", "1.0")]
    # A real change (new mtime) is seen.
    os.utime(metadata, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert source.read() == [pypi("cached", "2.0")]


def test_signature_moves_when_a_distribution_comes_or_goes(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    root.mkdir()
    source = only(root)
    first = source.signature()
    assert first is not None
    d = dist_info(root, "new", "1.0")
    second = source.signature()
    assert second != first
    shutil.rmtree(d)
    assert source.signature() != second
    assert not only(tmp_path / "absent").present()
    assert only(tmp_path / "absent").signature() is None


def test_dpkg_owned_distributions_are_left_to_dpkg(tmp_path: Path) -> None:
    root = tmp_path / "dist-packages"
    owned = dist_info(root, "requests", "2.28.1")
    dist_info(root, "local-only", "1.0")
    info = tmp_path / "info"
    info.mkdir()
    (info / "python3-requests.list").write_text(
        f"/.\n/usr\n{root}\n{owned}\n{owned}/METADATA\n{root}/requests/__init__.py"
    )
    (info / "python3-requests.md5sums").write_text(f"00  {owned}/METADATA\n")
    source = PypiSource(roots=[str(root)], dpkg_info_dir=info)
    assert source.read() == [pypi("local-only", "1.0")]
    # dpkg removes the package (its list goes): the dist-info, still there, is reported.
    (info / "python3-requests.list").unlink()
    assert source.read() == [pypi("local-only", "1.0"), pypi("requests", "2.28.1")]


def _dpkg_owners(paths: list[str]) -> set[str]:
    """The paths ``dpkg -S`` says a package installed (it exits 1 if some are not)."""
    out = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True, check=False)
    return {line.split(": ", 1)[1] for line in out.stdout.splitlines() if ": " in line}


@pytest.mark.skipif(not REAL_DIST_PACKAGES.is_dir(), reason="not a Debian-family system")
def test_the_real_dist_packages_agree_with_importlib_and_dpkg() -> None:
    everything = only(REAL_DIST_PACKAGES)
    found = everything.read()
    assert found, "this machine has Debian-packaged Python distributions"
    expected = {
        (normalize_pypi_name(d.metadata["Name"]), d.version)
        for d in importlib.metadata.distributions(path=[str(REAL_DIST_PACKAGES)])
    }
    assert {(p.name, p.version) for p in found} == expected
    assert everything.skipped == []
    entries = [
        str(p) for p in REAL_DIST_PACKAGES.iterdir() if p.name.endswith((".dist-info", ".egg-info"))
    ]
    owned = _dpkg_owners(entries)
    assert owned, "dpkg owns the dist-infos here"
    assert DpkgOwnedPaths().paths() >= owned
    # With the dpkg check (the default), exactly the entries no package owns remain.
    left = PypiSource(roots=[str(REAL_DIST_PACKAGES)]).read()
    unowned = [importlib.metadata.PathDistribution(Path(e)) for e in entries if e not in owned]
    assert {(p.name, p.version) for p in left} == {
        (normalize_pypi_name(d.metadata["Name"]), d.version) for d in unowned
    }


def test_a_few_thousand_distributions_are_read_well_under_a_second(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    for i in range(3000):
        dist_info(root, f"package-{i}", f"1.{i}.0", body="A long description.\n" * 200)
    source = only(root)
    # CPU time of this process: other work on the (shared, 2-core) machine does not
    # count against the collector.
    started = time.process_time()
    packages = source.read()
    cold = time.process_time() - started
    started = time.process_time()
    assert source.read() == packages
    warm = time.process_time() - started
    assert len(packages) == 3000
    # Measured here: ~0.4 s cold, 0.05-0.15 s from the cache (a stat per distribution;
    # that the cache is used is test_metadata_is_parsed_again_only_when_its_file_changes).
    assert cold < 1.0, cold
    assert warm < 0.5, warm


def test_a_stop_ends_a_read(tmp_path: Path) -> None:
    root = tmp_path / "site-packages"
    for i in range(300):
        dist_info(root, f"p{i}", "1.0")
    stop = threading.Event()
    stop.set()
    with pytest.raises(SoftwareReadError, match="pypi: stopped"):
        only(root).read(stop)


def test_an_unlistable_root_fails_the_read(shared_dir: Path) -> None:
    root = shared_dir / "site-packages"
    dist_info(root, "hidden", "1.0")
    root.chmod(0o700)  # its owner's alone
    result = _unprivileged(_READ_AS_NOBODY.format(root=str(root)))
    assert result["pypi"] == ["error", f"pypi: cannot list {root}: Permission denied"]
    assert result["npm_signature"]  # the change check itself does not fail
    assert result["npm"] == ["error", f"npm: cannot list {root}: Permission denied"]


# ---- npm -------------------------------------------------------------------------------


def test_global_packages_scoped_and_nested(tmp_path: Path) -> None:
    root = tmp_path / "node_modules"
    a = package_json(root / "left-pad", "left-pad", "1.3.0")
    package_json(a / "node_modules/semver", "semver", "5.7.2")
    package_json(a / "node_modules/semver/node_modules/lru-cache", "lru-cache", "6.0.0")
    package_json(root / "semver", "semver", "7.6.3")
    package_json(root / "@babel/core", "@babel/core", "7.26.0")
    package_json(root / "@babel/core/node_modules/@babel/types", "@babel/types", "7.26.0")
    (root / ".bin").mkdir()
    (root / ".package-lock.json").write_text("{}")
    (root / "not-a-package").mkdir()  # npm left an empty directory: no package.json
    checkout = package_json(tmp_path / "src/linked", "linked", "0.1.0")
    package_json(checkout / "node_modules/dev-only", "dev-only", "9.9.9")
    (root / "linked").symlink_to(checkout)
    source = NpmSource(roots=[str(root)])
    assert source.present()
    assert source.read() == [
        npm("@babel/core", "7.26.0"),
        npm("@babel/types", "7.26.0"),
        npm("left-pad", "1.3.0"),
        npm("linked", "0.1.0"),  # linked: reported, its own node_modules not walked
        npm("lru-cache", "6.0.0"),
        npm("semver", "5.7.2"),
        npm("semver", "7.6.3"),
    ]
    assert source.skipped == []


def test_broken_package_json_is_skipped_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "node_modules"
    package_json(root / "ok", "ok", "1.0.0")
    bad = root / "bad"
    bad.mkdir()
    (bad / "package.json").write_text('{"name": "bad", "version": ')
    wrong = root / "wrong"
    wrong.mkdir()
    (wrong / "package.json").write_text('{"name": "wrong", "version": 1}')
    array = root / "array"
    array.mkdir()
    (array / "package.json").write_text("[]")
    source = NpmSource(roots=[str(root)])
    assert source.read() == [npm("ok", "1.0.0")]
    assert sorted(source.skipped) == [
        f"{array}: package.json: not valid JSON for a package: Expected `object`, got `array`",
        f"{bad}: package.json: not valid JSON for a package: Input data was truncated",
        f"{wrong}: package.json: not valid JSON for a package: "
        "Expected `str`, got `int` - at `$.version`",
    ]


def test_npm_signature_sees_a_scoped_install(tmp_path: Path) -> None:
    root = tmp_path / "node_modules"
    (root / "@scope").mkdir(parents=True)
    source = NpmSource(roots=[str(root)])
    before = source.signature()
    time.sleep(0.01)  # mtime granularity of the file system
    package_json(root / "@scope/pkg", "@scope/pkg", "1.0.0")
    assert source.signature() != before
    assert source.read() == [npm("@scope/pkg", "1.0.0")]


def _npm_ls_tree(node: dict[str, Any], out: set[tuple[str, str]]) -> None:
    for name, child in node.get("dependencies", {}).items():
        if "version" in child:
            out.add((name, child["version"]))
        _npm_ls_tree(child, out)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_the_real_global_node_modules_agree_with_npm_ls() -> None:
    out = subprocess.run(
        ["npm", "ls", "-g", "--all", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd="/",
    ).stdout
    expected: set[tuple[str, str]] = set()
    _npm_ls_tree(json.loads(out), expected)
    source = NpmSource()
    found = {(p.name, p.version) for p in source.read()}
    assert expected, "npm is installed globally here"
    assert expected <= found
    # npm ls leaves out nothing that is installed but not depended on (and we saw
    # every package.json under the tree).
    on_disk = {
        (d["name"], d["version"])
        for path in REAL_NODE_MODULES.rglob("package.json")
        if path.parent.parent.name == "node_modules"
        or path.parent.parent.parent.name == "node_modules"
        if "name" in (d := json.loads(path.read_bytes())) and "version" in d
    }
    assert found <= on_disk
    assert source.skipped == []


# ---- version order ---------------------------------------------------------------------


def test_pypi_order_is_pep_440() -> None:
    chain = ["1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.1", "1!0.5"]
    for lower, higher in itertools.pairwise(chain):
        assert compare_pypi_versions(lower, higher) == -1
        assert compare_pypi_versions(higher, lower) == 1
    assert compare_pypi_versions("1.0", "1.0.0") == 0
    with pytest.raises(ValueError, match="Invalid version"):
        compare_pypi_versions("2004d-legacy!", "1.0")


SEMVER_CHAIN = [
    "0.9.9",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "2.0.0",
]


def test_npm_order_is_semver() -> None:
    for lower, higher in itertools.pairwise(SEMVER_CHAIN):
        assert compare_npm_versions(lower, higher) == -1
        assert compare_npm_versions(higher, lower) == 1
    assert compare_npm_versions("1.0.0+build.5", "1.0.0") == 0
    for bad in ("1.0", "01.0.0", "1.0.0-", "latest"):
        with pytest.raises(ValueError, match="not a SemVer"):
            compare_npm_versions(bad, "1.0.0")


@pytest.mark.skipif(not NPM_SEMVER.is_dir() or not shutil.which("node"), reason="no npm here")
def test_npm_order_agrees_with_the_real_semver_module() -> None:
    versions = [*SEMVER_CHAIN, "1.0.0-0", "1.0.0-1", "1.0.0-1a", "1.0.0-x.7.z.92", "3.1.4+sha"]
    pairs = [[a, b] for a in versions for b in versions]
    script = (
        f"const s = require({json.dumps(str(NPM_SEMVER))});"
        "const p = JSON.parse(require('fs').readFileSync(0));"
        "console.log(JSON.stringify(p.map(([a, b]) => s.compare(a, b))));"
    )
    out = subprocess.run(
        ["node", "-e", script], input=json.dumps(pairs), capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    assert [compare_npm_versions(a, b) for a, b in pairs] == json.loads(out)


# ---- broken input never breaks a scan --------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One directory for all hypothesis examples (a fresh tree inside for each)."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


_texts = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda name, version, junk: f"Name: {name}\nVersion: {version}\n{junk}".encode(
            "utf-8", "surrogatepass"
        ),
        st.text(max_size=40),
        st.text(max_size=40),
        st.text(max_size=200),
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["name", "version", "x"]), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=_texts, manifest=_texts)
def test_broken_metadata_never_breaks_the_scan(
    scratch: Path, metadata: bytes, manifest: bytes
) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        tmp = Path(d)
        site = tmp / "site-packages"
        dist_info(site, "fine", "1.0")
        (dist_info(site, "fuzzed", "1.0") / "METADATA").write_bytes(metadata)
        (site / "fuzzed2.egg-info").write_bytes(metadata)
        modules = tmp / "node_modules"
        package_json(modules / "fine", "fine", "1.0.0")
        (modules / "fuzzed").mkdir()
        (modules / "fuzzed/package.json").write_bytes(manifest)

        python = only(site)
        found = python.read()
        assert pypi("fine", "1.0") in found
        fuzzed = [p for p in found if p != pypi("fine", "1.0")]
        # The two fuzzed entries (same text) are both one package, or both skipped.
        try:
            expected = [parse_python_metadata(metadata)]
        except ValueError:
            expected = []
        if expected != [pypi("fine", "1.0")]:
            assert fuzzed == expected
        assert len(python.skipped) == (0 if expected else 2)

        node = NpmSource(roots=[str(modules)])
        found = node.read()
        assert npm("fine", "1.0.0") in found
        assert len(found) - 1 + len(node.skipped) == 1
        if node.skipped:
            assert node.skipped[0].startswith(f"{modules}/fuzzed: package.json: ")
            with pytest.raises(ValueError):
                parse_package_json(manifest)
