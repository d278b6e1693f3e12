"""The web collector against a real Chromium, headless and on an X display.

Chromium is Debian's /usr/bin/chromium (headless, and with a window on a real Xvfb +
openbox desktop from tests/desktop.py), visiting pages served on 127.0.0.1 while the
collector reads its History in a fake home: the visits must be reported while the
browser still runs (and holds the database locked), a restarted collector must not
report them again, and visits made after the restart must be reported. Chromium
commits its history about every 10 s, so each of those tests waits that long.

Firefox is not installed here: its part runs on a places.sqlite made in the test
with Firefox's real schema and held open in WAL mode like a running Firefox (see
tests/agent/platform/test_browsers.py, ``Places``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import Sink
from sekimori.agent.collectors.web import WebCollector, WebSettings, host_excluded, visit_event
from sekimori.agent.outbox import Outbox
from sekimori.agent.platform.linux.browsers import HistoryFile, Home, Visit
from sekimori.clock import now_us
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import AgentLog
from sekimori.protocol.events.web import WebVisit
from tests.agent.platform.test_browsers import Chromium, Pages, Places
from tests.desktop import Desktop, desktop  # noqa: F401 - the fixture, found by name

NOBODY = 65534
HOUR_US = 3_600_000_000

Seen = tuple[int, int, str | None, WebVisit]  # seq, time_us, os_user, payload


def visits(outbox: Outbox, after_seq: int = 0) -> list[Seen]:
    out: list[Seen] = []
    for event in outbox.peek(after_seq, max_events=100_000, max_bytes=1 << 30):
        if event.kind == "web.visit":
            payload = decode_payload(event.kind, event.payload)
            assert isinstance(payload, WebVisit)
            out.append((event.seq, event.time_us, event.os_user, payload))
    return out


def wait_for(
    outbox: Outbox, found: Callable[[list[Seen]], bool], timeout: float = 10.0, after: int = 0
) -> list[Seen]:
    deadline = time.monotonic() + timeout
    while not found(seen := visits(outbox, after)):
        if time.monotonic() > deadline:
            pytest.fail(f"expected web.visit events did not appear; got {seen}")
        time.sleep(0.05)
    return seen


def urls(seen: list[Seen]) -> list[str]:
    return [payload.url for _, _, _, payload in seen]


class Running:
    """The collector's run() in a thread; stop() joins and re-raises its failure."""

    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        settings.setdefault("interval_seconds", 0.1)
        conf = msgspec.convert(settings, WebSettings)
        self.collector = WebCollector(conf, Sink(outbox, "web"))
        self.stop_event = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.collector.run(self.stop_event)
        except Exception as exc:  # noqa: BLE001 - handed to the test by stop()
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "collector did not stop"
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def running(outbox: Outbox, **settings: Any) -> Iterator[Running]:
    collector = Running(outbox, **settings)
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's home folder, owned by that user (``nobody``, uid 65534)."""
    path = tmp_path / "home" / "alice"
    path.mkdir(parents=True)
    os.chown(path, NOBODY, NOBODY)
    return path


@pytest.fixture
def pages() -> Iterator[Pages]:
    served = Pages({"a": "Sekimori page A", "b": "Sekimori page B", "c": "Sekimori page C"})
    yield served
    served.close()


def assert_locked(history: Path) -> None:
    """An ordinary reader is locked out: the browser holds its database."""
    db = sqlite3.connect(f"{history.as_uri()}?mode=ro", uri=True, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.execute("SELECT count(*) FROM visits").fetchone()
    finally:
        db.close()


# ---- a real Chromium --------------------------------------------------------------------


@pytest.mark.slow
def test_headless_chromium_visits_are_reported_live_once(
    tmp_path: Path, home: Path, pages: Pages
) -> None:
    outbox_path = tmp_path / "o.db"
    data_dir = home / ".config" / "chromium"
    history = data_dir / "Default" / "History"
    started = now_us()
    # Headless Chromium takes one URL on its command line; the second is a new tab.
    browser = Chromium(data_dir, [pages.url("a")])
    try:
        browser.open(pages.url("b"))
        outbox = Outbox(outbox_path, max_bytes=1 << 30)
        with running(outbox, homes=[str(home)]):
            seen = wait_for(outbox, lambda s: len(s) >= 2 or not browser.running, timeout=60)
            assert browser.running
            assert_locked(history)
        finished = now_us()

        assert sorted(urls(seen)) == [pages.url("a"), pages.url("b")]
        for _, time_us, os_user, visit in seen:
            assert started <= time_us <= finished
            assert os_user == "nobody"  # the owner of the home
            assert (visit.browser, visit.profile, visit.host) == (
                "chromium",
                "Default",
                "127.0.0.1",
            )
            assert visit.title == {pages.url("a"): "Sekimori page A"}.get(
                visit.url, "Sekimori page B"
            )
            assert not visit.masked
        last_seq = max(seq for seq, *_ in seen)
        outbox.close()

        # The agent restarts: a new outbox object on the same file, a new collector.
        outbox = Outbox(outbox_path, max_bytes=1 << 30)
        try:
            with running(outbox, homes=[str(home)]):
                browser.open(pages.url("c"))
                after = wait_for(
                    outbox, lambda s: bool(s) or not browser.running, timeout=60, after=last_seq
                )
                assert browser.running
            # Only the new visit: A and B were not sent again.
            assert urls(visits(outbox, last_seq)) == [pages.url("c")]
            assert after[0][3].title == "Sekimori page C"
        finally:
            outbox.close()
    finally:
        browser.close()


@pytest.mark.slow
def test_chromium_on_a_display_is_reported_while_it_runs(
    tmp_path: Path,
    home: Path,
    pages: Pages,
    desktop: Desktop,  # noqa: F811 - the fixture imported above
) -> None:
    data_dir = home / ".config" / "chromium"
    started = now_us()
    browser = Chromium(data_dir, [pages.url("a")], headless=False, env=desktop.env)
    try:
        desktop.wait_window(r"Sekimori page A - Chromium", timeout=30)  # really on screen
        outbox = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
        try:
            with running(outbox, homes=[str(home)]):
                seen = wait_for(outbox, lambda s: bool(s) or not browser.running, timeout=60)
                assert browser.running
                assert_locked(data_dir / "Default" / "History")
            ((_, time_us, os_user, visit),) = seen
            assert started <= time_us <= now_us()
            assert os_user == "nobody"
            assert (visit.url, visit.title) == (pages.url("a"), "Sekimori page A")
            assert (visit.browser, visit.profile) == ("chromium", "Default")
        finally:
            outbox.close()
    finally:
        browser.close()


# ---- Firefox (a places.sqlite with Firefox's schema) ------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


def firefox_profile(home: Path, name: str = "k3x9.default-release") -> Path:
    root = home / ".mozilla" / "firefox"
    root.mkdir(parents=True, exist_ok=True)
    (root / "profiles.ini").write_text(
        f"[Profile0]\nName=default-release\nIsRelative=1\nPath={name}\nDefault=1\n"
    )
    return root / name / "places.sqlite"


@pytest.fixture
def places(home: Path) -> Iterator[Places]:
    db = Places(firefox_profile(home))
    os.chown(db.path, NOBODY, NOBODY)  # Firefox runs as the user
    yield db
    db.close()


def test_firefox_visits_are_reported_once_across_restarts(
    tmp_path: Path, home: Path, places: Places
) -> None:
    now = now_us()
    places.visit("https://intranet.example/", "Intranet", now - 60_000_000, visit_type=2)
    places.visit("https://intranet.example/news", None, now - 30_000_000)
    outbox = Outbox(tmp_path / "restart.db", max_bytes=1 << 30)
    try:
        with running(outbox, homes=[str(home)]):
            seen = wait_for(outbox, lambda s: len(s) == 2)
        assert [(t, u, p.url, p.title, p.transition) for _, t, u, p in seen] == [
            (now - 60_000_000, "nobody", "https://intranet.example/", "Intranet", "typed"),
            (now - 30_000_000, "nobody", "https://intranet.example/news", "", "link"),
        ]
        assert {(p.browser, p.profile) for *_, p in seen} == {("firefox", "k3x9.default-release")}
        last_seq = seen[-1][0]
        outbox.close()

        outbox = Outbox(tmp_path / "restart.db", max_bytes=1 << 30)
        places.visit("https://intranet.example/later", "Later", now_us())
        with running(outbox, homes=[str(home)]):
            wait_for(outbox, bool, after=last_seq)
        assert urls(visits(outbox, last_seq)) == ["https://intranet.example/later"]
    finally:
        outbox.close()


def test_firefox_reusing_a_deleted_visit_id_is_still_reported(
    outbox: Outbox, home: Path, places: Places
) -> None:
    now = now_us()
    places.visit("https://a.example/", "A", now - 2_000_000)
    newest = places.visit("https://b.example/", "B", now - 1_000_000)
    with running(outbox, homes=[str(home)]):
        wait_for(outbox, lambda s: len(s) == 2)
        places.forget(newest)  # "forget the last minutes of history"
        reused = places.visit("https://c.example/", "C", now_us())
        assert reused == newest
        seen = wait_for(outbox, lambda s: len(s) == 3)
    assert urls(seen) == ["https://a.example/", "https://b.example/", "https://c.example/"]


def test_a_replaced_history_file_is_not_sent_again(
    outbox: Outbox, home: Path, places: Places
) -> None:
    """A new file (new inode) holding the old visits under new ids, plus a new one."""
    now = now_us()
    old = [("https://old.example/1", now - 20_000_000), ("https://old.example/2", now - 10_000_000)]
    for url, when in old:
        places.visit(url, "old", when)
    with running(outbox, homes=[str(home)]):
        wait_for(outbox, lambda s: len(s) == 2)
        places.close()
        shutil.move(places.path, places.path.with_name("places.sqlite.bak"))
        Path(f"{places.path}-wal").unlink(missing_ok=True)
        places.__init__(places.path)  # type: ignore[misc]  # a fresh database, same path
        for n in range(5):  # more rows than before: ids now go past the old cursor
            places.visit(f"https://unrelated.example/{n}", "older still", now - HOUR_US)
        for url, when in old:
            places.visit(url, "old", when)
        places.visit("https://new.example/", "new", now_us())
        seen = wait_for(outbox, lambda s: len(s) >= 3)
    assert urls(seen) == [url for url, _ in old] + ["https://new.example/"]


def test_first_run_reports_only_the_backfill_window(
    outbox: Outbox, home: Path, places: Places
) -> None:
    now = now_us()
    places.visit("https://two-days-ago.example/", "old", now - 48 * HOUR_US)
    places.visit("https://an-hour-ago.example/", "recent", now - HOUR_US)
    places.visit("https://ten-hours-ago.example/", "recent", now - 10 * HOUR_US)
    with running(outbox, homes=[str(home)], backfill_hours=12):
        seen = wait_for(outbox, lambda s: len(s) >= 2)
        places.visit("https://now.example/", "now", now_us())
        seen = wait_for(outbox, lambda s: len(s) >= 3)
    assert urls(seen) == [
        "https://an-hour-ago.example/",
        "https://ten-hours-ago.example/",
        "https://now.example/",
    ]


def test_excluded_domains_and_masked_urls(outbox: Outbox, home: Path, places: Places) -> None:
    now = now_us()
    for n, url in enumerate(
        [
            "https://bank.example/account?id=7",
            "https://www.Bank.Example/login",
            "about:newtab",
            "chrome-extension://abcdef/popup.html",
            "https://notbank.example:8443/search?q=secret+plans#top",
            "http://[2001:db8::1]:8080/private/page",
            "file:///home/alice/report.pdf",
        ]
    ):
        places.visit(url, f"title {n}", now - 1_000_000 + n)
    with running(
        outbox, homes=[str(home)], exclude_domains=["bank.example"], mask_urls_to_domain=True
    ):
        seen = wait_for(outbox, lambda s: len(s) >= 3)
        places.visit("https://sentinel.example/x", "sentinel", now_us())
        seen = wait_for(outbox, lambda s: len(s) >= 4)
    assert [(p.url, p.title, p.host, p.masked) for *_, p in seen] == [
        ("https://notbank.example/", "", "notbank.example", True),
        ("http://[2001:db8::1]/", "", "2001:db8::1", True),
        ("file:///", "", "", True),
        ("https://sentinel.example/", "", "sentinel.example", True),
    ]


def test_a_corrupt_history_does_not_stop_the_others(
    outbox: Outbox, home: Path, places: Places, caplog: pytest.LogCaptureFixture
) -> None:
    broken = home / ".mozilla" / "firefox" / "broken.profile" / "places.sqlite"
    broken.parent.mkdir()
    broken.write_bytes(b"garbage" * 1000)
    places.visit("https://works.example/", "works", now_us())
    with running(outbox, homes=[str(home)]):
        seen = wait_for(outbox, bool)
        places.visit("https://still-works.example/", "works", now_us())
        seen = wait_for(outbox, lambda s: len(s) == 2)
    assert urls(seen) == ["https://works.example/", "https://still-works.example/"]
    assert "broken.profile/places.sqlite" in caplog.text
    # The server is told once (not every tick) which history is not being reported.
    logs = [
        decode_payload(e.kind, e.payload)
        for e in outbox.peek(0, max_events=1000, max_bytes=1 << 30)
        if e.kind == "agent.log"
    ]
    assert len(logs) == 1
    assert isinstance(logs[0], AgentLog)
    assert logs[0].source == "collector.web"
    assert "broken.profile/places.sqlite" in logs[0].message


# ---- policy helpers and settings ----------------------------------------------------------


def test_visit_event_truncates_and_attributes(tmp_path: Path) -> None:
    history = HistoryFile(
        tmp_path / "History", "chromium", "brave", "Profile 2", Home(tmp_path, 1000, "carol")
    )
    long_url = "https://example.org/" + "x" * 10_000
    visit = Visit(7, long_url, "t" * 5000, 1_700_000_000_000_000, "reload")
    event = visit_event(WebSettings(), history, visit)
    assert event is not None
    assert (event.kind, event.os_user, event.time_us) == ("web.visit", "carol", visit.time_us)
    payload = event.payload
    assert isinstance(payload, WebVisit)
    assert len(payload.url) == 4096 and payload.url == long_url[:4096]
    assert len(payload.title) == 1024
    assert (payload.browser, payload.profile, payload.transition) == (
        "brave",
        "Profile 2",
        "reload",
    )


def test_credentials_in_a_url_are_not_reported(tmp_path: Path) -> None:
    history = HistoryFile(
        tmp_path / "History", "chromium", "chromium", "Default", Home(tmp_path, 0, "root")
    )
    visit = Visit(1, "https://bob:s3cret@files.example:8443/share?x=1", "Files", 1, "typed")
    event = visit_event(WebSettings(), history, visit)
    assert event is not None and isinstance(event.payload, WebVisit)
    assert event.payload.url == "https://files.example:8443/share?x=1"
    assert event.payload.host == "files.example"


def test_host_exclusion_matches_domains_and_subdomains_only() -> None:
    domains = ["Example.COM", "*.social.test", ".video.test."]
    assert host_excluded("example.com", domains)
    assert host_excluded("www.example.com", domains)
    assert host_excluded("a.b.social.test", domains)
    assert host_excluded("video.test", domains)
    assert not host_excluded("notexample.com", domains)
    assert not host_excluded("example.com.evil.test", domains)
    assert not host_excluded("", domains)


def test_settings_are_validated() -> None:
    defaults = msgspec.convert({}, WebSettings)
    assert defaults.interval_seconds == 10.0
    assert defaults.browsers == ["chromium", "chrome", "edge", "brave", "firefox"]
    assert (defaults.exclude_domains, defaults.mask_urls_to_domain) == ([], False)
    with pytest.raises(msgspec.ValidationError, match="browsers"):
        msgspec.convert({"browsers": ["netscape"]}, WebSettings)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"mask_urls": True}, WebSettings)
