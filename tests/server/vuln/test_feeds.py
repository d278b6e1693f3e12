"""Feed parsers on real records: what they keep, and what they refuse (with the
record and field named) — truncated files, wrong types, zip bombs, junk."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekimori.server.vuln.feeds import FEEDS, FeedError, FeedLimits, detect_kind
from sekimori.server.vuln.feeds.kev import parse_kev
from sekimori.server.vuln.feeds.nvd import parse_nvd
from sekimori.server.vuln.feeds.osv import parse_osv
from tests.server.vuln.fixtures import KEV, NVD, osv_record, osv_zip

LIMITS = FeedLimits()


def _ranges(data: bytes) -> dict[tuple[str, str], list[tuple[str, str | None, bool]]]:
    (advisory,) = parse_osv(data, "x", LIMITS).advisories
    out: dict[tuple[str, str], list[tuple[str, str | None, bool]]] = {}
    for r in advisory.ranges:
        out.setdefault((r.ecosystem, r.package), []).append((r.lower, r.upper, r.upper_inclusive))
    return out


def test_debian_record_keeps_each_release_fix_apart() -> None:
    ranges = _ranges(osv_record("DEBIAN-CVE-2024-10041"))
    assert ranges[("Debian:12", "pam")] == [("", None, False)]  # no fix in bookworm
    assert ranges[("Debian:13", "pam")] == [("", "1.7.0-2", False)]
    (advisory,) = parse_osv(osv_record("DEBIAN-CVE-2024-10041"), "x", LIMITS).advisories
    assert advisory.aliases == ("CVE-2024-10041",)
    assert advisory.cvss_score == 4.7 and advisory.severity == "MEDIUM"


def test_ubuntu_pypi_npm_and_version_lists() -> None:
    ubuntu = _ranges(osv_record("USN-8820-1"))
    assert ubuntu[("Ubuntu:22.04:LTS", "curl")] == [("", "7.81.0-1ubuntu1.29", False)]
    assert ("Ubuntu:Pro:18.04:LTS", "curl") in ubuntu
    assert _ranges(osv_record("GHSA-j8r2-6x86-q33q")) == {
        ("PyPI", "requests"): [("2.3.0", "2.31.0", False)]
    }
    assert _ranges(osv_record("GHSA-jf85-cpcp-j695"))[("npm", "lodash")] == [("", "4.17.12", False)]
    # A record whose only ECOSYSTEM range is "introduced 0": every version.
    assert _ranges(osv_record("PYSEC-2018-103")) == {("PyPI", "ymlref"): [("", None, False)]}


def test_a_zip_of_records_and_skipped_ecosystems() -> None:
    go = json.dumps(
        {
            "id": "GO-2022-0001",
            "modified": "2022-08-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Go", "name": "x"}, "ranges": []}],
        }
    ).encode()
    feed = parse_osv(osv_zip(extra={"GO-2022-0001.json": go}), "all.zip", LIMITS)
    ids = {a.id for a in feed.advisories}
    assert "GO-2022-0001" not in ids and "DEBIAN-CVE-2024-10041" in ids
    assert feed.records == 9
    assert feed.skipped == {"ecosystem Go not matched": 1}


def test_kev_catalog() -> None:
    feed = parse_kev(KEV.read_bytes(), "kev.json", LIMITS)
    skysea = next(e for e in feed.kev if e.cve_id == "CVE-2016-7836")
    assert (skysea.vendor, skysea.product, skysea.ransomware) == (
        "SKYSEA",
        "Client View",
        "Unknown",
    )
    assert skysea.date_added_us == 1_760_400_000_000_000  # 2025-10-14
    assert skysea.due_date_us == 1_762_214_400_000_000  # 2025-11-04


def test_nvd_cvss_and_cpe_ranges() -> None:
    feed = parse_nvd(NVD.read_bytes(), "nvd.json", LIMITS)
    webp = next(a for a in feed.advisories if a.id == "CVE-2023-4863")
    assert (webp.cvss_score, webp.severity) == (8.8, "HIGH")
    libwebp = [r for r in webp.ranges if r.package == "webmproject:libwebp"]
    assert [(r.lower, r.upper, r.upper_inclusive, r.fixed) for r in libwebp] == [
        ("", "1.3.2", False, "1.3.2")
    ]
    assert all(r.ecosystem == "cpe" for r in webp.ranges)
    assert not any(r.package.startswith("fedoraproject") for r in webp.ranges)  # OS CPEs
    xz = next(a for a in feed.advisories if a.id == "CVE-2024-3094")
    assert [(r.lower, r.upper) for r in xz.ranges] == [("5.6.0", "5.6.0"), ("5.6.1", "5.6.1")]


def test_detect_kind() -> None:
    assert detect_kind(KEV.read_bytes()) == "kev"
    assert detect_kind(NVD.read_bytes()) == "nvd"
    assert detect_kind(osv_record("USN-8820-1")) == "osv"
    assert detect_kind(osv_zip()) == "osv"
    with pytest.raises(FeedError):
        detect_kind(b"hello")


def test_wrong_types_are_refused_naming_record_and_field() -> None:
    record = json.loads(osv_record("GHSA-j8r2-6x86-q33q"))
    record["affected"][0]["ranges"][0]["events"] = "2.31.0"
    with pytest.raises(FeedError, match=r"GHSA-j8r2-6x86-q33q.*affected\[0\]\.ranges\[0\]\.events"):
        parse_osv(json.dumps(record).encode(), "x", LIMITS)
    record = json.loads(osv_record("USN-8820-1"))
    record["modified"] = "yesterday"
    with pytest.raises(FeedError, match="USN-8820-1: field `modified`"):
        parse_osv(json.dumps(record).encode(), "x", LIMITS)
    kev = json.loads(KEV.read_bytes())
    kev["vulnerabilities"][1]["dateAdded"] = "14/10/2025"
    with pytest.raises(FeedError, match="KEV entry CVE-2016-7836: field `dateAdded`"):
        parse_kev(json.dumps(kev).encode(), "x", LIMITS)


def test_a_kev_catalog_cut_short_is_refused() -> None:
    kev = json.loads(KEV.read_bytes())
    kev["vulnerabilities"].pop()
    with pytest.raises(FeedError, match="truncated"):
        parse_kev(json.dumps(kev).encode(), "x", LIMITS)


def test_zip_limits_stop_bombs() -> None:
    # 64 MiB of zeros deflates to ~64 KiB: refused on the bytes actually inflated.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BOMB-1.json", b"0" * (64 * 1024 * 1024))
    small = FeedLimits(max_entry_bytes=1024 * 1024)
    with pytest.raises(FeedError, match="larger than"):
        parse_osv(buffer.getvalue(), "bomb.zip", small)
    with pytest.raises(FeedError, match="inflates to more than"):
        parse_osv(osv_zip(), "all.zip", FeedLimits(max_uncompressed_bytes=10_000))
    with pytest.raises(FeedError, match="entries"):
        parse_osv(osv_zip(), "all.zip", FeedLimits(max_entries=3))


FILES = {
    "osv": osv_record("USN-8820-1"),
    "osv-zip": osv_zip(),
    "kev": KEV.read_bytes(),
    "nvd": NVD.read_bytes(),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FILES)), st.floats(0.0, 0.999))
def test_every_truncation_is_refused_with_a_feed_error(name: str, fraction: float) -> None:
    data = FILES[name]
    cut = data[: int(len(data) * fraction)]
    kind = name.split("-", maxsplit=1)[0]
    with pytest.raises(FeedError):
        FEEDS[kind](cut, name, LIMITS)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["osv", "kev", "nvd"]), st.binary(max_size=300))
def test_junk_is_refused_with_a_feed_error(kind: str, data: bytes) -> None:
    # Refused with a FeedError, never another exception (a crash in the importer).
    with pytest.raises(FeedError):
        FEEDS[kind](data, "junk", LIMITS)
