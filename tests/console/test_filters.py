"""The activity filter parser: any query string gives either a valid filter or a
FilterError with a message — never another exception (property tests) — and the
times mean what the console's time zone says."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.console.filters import (
    MAX_PAGE,
    PAGE_SIZE,
    ActivityFilter,
    FilterError,
    parse_activity_filter,
)

NOW = 1_720_000_000_000_000
FIELDS = ("since", "until", "device", "group", "user", "kind", "q", "page", "other")

times = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A\d{1,6}[mhdwsy]?\Z"),
    # Naive on purpose: what a user types is a wall-clock time in the console's zone.
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2300, 1, 1)).map(  # noqa: DTZ001
        lambda d: d.strftime("%Y-%m-%dT%H:%M")
    ),
)
values = st.one_of(
    st.text(max_size=300),
    times,
    st.sampled_from([*EVENT_KINDS, "web.", "file.", "nope.", "", "0", "-1", "201"]),
)


@settings(max_examples=400, deadline=None)
@given(
    params=st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)),
    zone=st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata"]),
)
def test_any_query_is_a_valid_filter_or_a_filter_error(params: dict[str, str], zone: str) -> None:
    try:
        parsed = parse_activity_filter(params, timezone=zone, now_us=NOW)
    except FilterError as error:
        assert error.text()  # a message to show, placeholders filled
        return
    assert isinstance(parsed, ActivityFilter)
    assert parsed.since_us < parsed.until_us
    assert 1 <= parsed.page <= MAX_PAGE and parsed.offset == (parsed.page - 1) * PAGE_SIZE
    assert all(kind in EVENT_KINDS for kind in parsed.kinds)
    assert len(parsed.q) <= 200 and len(parsed.device) <= 255
    assert all(ord(ch) >= 32 for ch in parsed.q + parsed.user + parsed.device + parsed.group)
    # The filter's own query string parses back to the same filter.
    again = parse_activity_filter(parsed.query(page=parsed.page), timezone=zone, now_us=NOW)
    assert (again.since_us, again.until_us, again.kinds, again.q) == (
        parsed.since_us,
        parsed.until_us,
        parsed.kinds,
        parsed.q,
    )


@given(amount=st.integers(min_value=1, max_value=360), unit=st.sampled_from("mhd"))
def test_relative_ages_count_back_from_now(amount: int, unit: str) -> None:
    parsed = parse_activity_filter({"since": f"{amount}{unit}"}, timezone="UTC", now_us=NOW)
    seconds = amount * {"m": 60, "h": 3600, "d": 86400}[unit]
    assert parsed.since_us == NOW - seconds * 1_000_000


@given(
    local=st.datetimes(
        min_value=dt.datetime(2001, 1, 1),  # noqa: DTZ001 - a wall-clock time
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
    ),
    zone=st.sampled_from(["Asia/Tokyo", "America/New_York", "Europe/London"]),
)
def test_local_times_are_read_in_the_console_zone(local: dt.datetime, zone: str) -> None:
    local = local.replace(second=0, microsecond=0)
    text = local.strftime("%Y-%m-%dT%H:%M")
    parsed = parse_activity_filter(
        {"since": text, "until": "2199-12-31T00:00"},
        timezone=zone,
        now_us=NOW,
        max_days=100_000,
    )
    expected = local.replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()
    assert parsed.since_us == int(expected) * 1_000_000


def test_defaults() -> None:
    logs = parse_activity_filter({}, timezone="UTC", now_us=NOW)
    assert logs.since == "24h" and logs.since_us == NOW - 24 * 3_600_000_000
    assert logs.until_us > NOW and logs.page == 1 and logs.kinds == ()
    reports = parse_activity_filter(
        {"kind": "ignored", "page": "x"},
        timezone="UTC",
        now_us=NOW,
        default_since="7d",
        paged=False,
        kinds=False,
    )
    assert reports.since_us == NOW - 7 * 86_400_000_000 and reports.kinds == ()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2024-05-02", "until": "2024-05-01"}, "after its start"),
        ({"since": "2024-05-01T10:00", "until": "2024-05-01T10:00"}, "after its start"),
        ({"kind": "web"}, "not a known event kind"),
        ({"kind": "nope."}, "not a known event kind"),
        ({"page": "0"}, "not a page number"),
        ({"page": str(MAX_PAGE + 1)}, "narrow the search"),
        ({"since": "1999-12-31T23:00"}, "out of range"),
    ],
)
def test_refusals(params: dict[str, str], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_activity_filter(params, timezone="UTC", now_us=NOW)


def test_whole_domains() -> None:
    parsed = parse_activity_filter({"kind": "session."}, timezone="UTC", now_us=NOW)
    assert parsed.kinds == tuple(k for k in EVENT_KINDS if k.startswith("session."))
