"""Version ordering: Debian against the real ``dpkg --compare-versions``, PEP 440
through packaging, SemVer 2.0 precedence per the specification's own examples."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.server.vuln.versions import (
    DebianVersionError,
    SemverError,
    debian_key,
    generic_key,
    pep440_key,
    semver_key,
)

DPKG = shutil.which("dpkg")


def _dpkg_cmp(a: str, b: str) -> int:
    assert DPKG is not None
    for op, result in (("lt", -1), ("eq", 0)):
        done = subprocess.run(
            [DPKG, "--compare-versions", a, op, b], check=False, capture_output=True
        )
        if done.returncode == 0:
            return result
    return 1


def _cmp(a: str, b: str) -> int:
    ka, kb = debian_key(a), debian_key(b)
    return (ka > kb) - (ka < kb)


# Version strings dpkg accepts without warnings: an optional epoch, an upstream part
# starting with a digit, an optional revision; tildes, pluses, dots and letters mixed.
_UPSTREAM_CHARS = st.sampled_from(list("0123456789.+~abz"))
_REVISION_CHARS = st.sampled_from(list("0123456789.+~bdeu"))
_debian = st.builds(
    lambda epoch, first, rest, revision: (
        (f"{epoch}:" if epoch is not None else "")
        + first
        + rest
        + (f"-{revision}" if revision else "")
    ),
    st.one_of(st.none(), st.integers(0, 3)),
    st.sampled_from(list("0123456789")),
    st.text(_UPSTREAM_CHARS, max_size=8),
    st.text(_REVISION_CHARS, max_size=6).filter(lambda r: r == "" or r[0].isalnum()),
)


@pytest.mark.skipif(DPKG is None, reason="needs dpkg (Debian)")
@settings(max_examples=300, deadline=None)
@given(_debian, _debian)
def test_debian_order_is_dpkgs(a: str, b: str) -> None:
    assert _cmp(a, b) == _dpkg_cmp(a, b), (a, b)


@pytest.mark.skipif(DPKG is None, reason="needs dpkg (Debian)")
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1:2.39.5-0+deb12u3", "2.45.0-1"),  # epoch wins over a higher upstream
        ("3.0.19-1~deb12u2", "3.0.19-1"),  # tilde sorts before the release
        ("1.0~rc1", "1.0"),
        ("1.0~~", "1.0~"),
        ("2.36-9+deb12u3", "2.36-9+deb12u14"),  # numeric, not string
        ("1.0", "1.0-0"),
        ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
        ("7.81.0-1ubuntu1.28", "7.81.0-1ubuntu1.29"),
        ("1.0a", "1.0+"),
        ("0", "0~"),  # the end of a part against a continuation with a tilde
        ("0", "0.1"),
        ("1a", "1a0"),
        ("1.0-0~", "1.0"),
        ("2:0", "1:9"),
    ],
)
def test_debian_known_pairs(a: str, b: str) -> None:
    assert _cmp(a, b) == _dpkg_cmp(a, b)


def test_malformed_debian_versions_are_refused() -> None:
    for bad in ("", "abc", "1.0 beta", "x:1.0", "1.0-"):
        with pytest.raises(DebianVersionError):
            debian_key(bad)


def test_semver_precedence_follows_the_specification() -> None:
    # semver.org §11's own chain.
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    keys = [semver_key(v) for v in chain]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")
    assert semver_key("v4.17.12") == semver_key("4.17.12")
    for bad in ("1.0", "01.0.0", "1.0.0-", "latest"):
        with pytest.raises(SemverError):
            semver_key(bad)


@given(
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
)
def test_semver_release_order_is_numeric(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    assert (semver_key(va) < semver_key(vb)) == (a < b)


def test_pep440_and_generic() -> None:
    assert pep440_key("2.31.0") > pep440_key("2.31.0rc1") > pep440_key("2.30.99")
    assert pep440_key("1.0") == pep440_key("1.0.0")
    assert generic_key("116.0.5845.187") < generic_key("116.0.5845.188")
    assert generic_key("1.3") == generic_key("1.3.0")
