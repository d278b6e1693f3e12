"""Browser profile discovery and history readers.

Chromium is real: Debian's /usr/bin/chromium visits pages served on 127.0.0.1 and
its own History database is read. Firefox is not installed on this machine, so its
reader runs on a places.sqlite made here with Firefox's real schema (the CREATE
statements of toolkit/components/places/nsPlacesTables.h and nsPlacesIndexes.h) in
WAL mode, held open and exclusively locked by a writer as a running Firefox holds
it. The profile trees (several browsers, channels and profiles) are built as folders
of empty files: discovery only looks at names, types and owners.

The helpers here (``Pages``, ``Chromium``, ``Places``) are shared with
tests/agent/collectors/test_web.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import websockets
from websockets.sync.client import connect

from sekimori.agent.platform.linux import browsers
from sekimori.agent.platform.linux.browsers import (
    CHROMIUM_EPOCH_OFFSET_US,
    HistoryFile,
    HistoryUnreadable,
    Home,
    chromium_time_to_unix_us,
    find_history_files,
    history_state,
    homes_at,
    local_homes,
    read_history,
    unix_us_to_chromium_time,
)
from sekimori.clock import now_us

CHROMIUM = "/usr/bin/chromium"
NOBODY = 65534

# ---- shared helpers: a page server, a real Chromium, a Firefox places.sqlite --------


class Pages:
    """HTML pages with distinct titles, served on 127.0.0.1 from a thread."""

    def __init__(self, titles: dict[str, str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                title = titles.get(self.path.strip("/"))
                if title is None:
                    self.send_error(404)
                    return
                body = f"<html><head><title>{title}</title></head><body>{title}</body></html>"
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Chromium:
    """A real Chromium on its own user data dir, with a DevTools endpoint to open tabs.

    The DevTools port is the test's local control channel (``/json/new`` opens a
    tab as if the user did); it is not part of what is tested.
    """

    def __init__(
        self,
        user_data_dir: Path,
        urls: list[str],
        *,
        headless: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        """``env``: the environment of an X display to show on (with ``headless=False``)."""
        self.user_data_dir = user_data_dir
        args = [
            CHROMIUM,
            *(["--headless=new"] if headless else []),
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--password-store=basic",
            "--remote-debugging-port=0",
            f"--user-data-dir={user_data_dir}",
            *urls,
        ]
        # Its own session, so close() can end the browser with its helper processes.
        self.proc = subprocess.Popen(
            args,
            env=env if env is not None else dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._port: int | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def devtools_port(self, timeout: float = 30.0) -> int:
        port_file = self.user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while self._port is None:
            with contextlib.suppress(OSError, ValueError):
                self._port = int(port_file.read_text().split()[0])
            if self._port is None:
                if time.monotonic() > deadline or not self.running:
                    pytest.fail("Chromium did not open its DevTools endpoint")
                time.sleep(0.1)
        return self._port

    def open(self, url: str) -> None:
        """Open ``url`` in a new tab."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.devtools_port()}/json/new?{url}", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            response.read()

    def wait_for_title(self, title: str, timeout: float = 30.0) -> None:
        """Wait until a tab shows ``title``: the page is loaded and the browser knows it."""
        url = f"http://127.0.0.1:{self.devtools_port()}/json/list"
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(url, timeout=10) as response:
                if any(tab.get("title") == title for tab in json.load(response)):
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"no Chromium tab titled {title!r}")
            time.sleep(0.1)

    def close(self) -> None:
        """Quit as a user would: Chromium then writes the history it still holds.

        (On SIGTERM it exits without committing visits of the last ~10 s.)
        """
        if self.running and self._port is not None:
            with contextlib.suppress(OSError, websockets.exceptions.WebSocketException):
                version = f"http://127.0.0.1:{self._port}/json/version"
                with urllib.request.urlopen(version, timeout=10) as response:
                    endpoint = json.load(response)["webSocketDebuggerUrl"]
                with connect(endpoint, open_timeout=10) as channel:
                    channel.send(json.dumps({"id": 1, "method": "Browser.close"}))
                    channel.recv(timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Helpers (zygote, renderers) of the same session that outlived the browser.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def chromium_visits(history: Path) -> list[tuple[str, str]]:
    """(url, title) of the visits Chromium has committed so far (read in place)."""
    try:
        db = sqlite3.connect(f"{history.as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute("SELECT u.url, u.title FROM visits v JOIN urls u ON u.id = v.url")
        return [(str(url), str(title)) for url, title in rows]
    except sqlite3.Error:
        return []
    finally:
        db.close()


FIREFOX_SCHEMA = """
CREATE TABLE moz_origins ( id INTEGER PRIMARY KEY, prefix TEXT NOT NULL, host TEXT NOT NULL,
  frecency INTEGER NOT NULL, recalc_frecency INTEGER NOT NULL DEFAULT 0, alt_frecency INTEGER,
  recalc_alt_frecency INTEGER NOT NULL DEFAULT 0, UNIQUE (prefix, host) );
CREATE TABLE moz_places (   id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR,
  rev_host LONGVARCHAR, visit_count INTEGER DEFAULT 0, hidden INTEGER DEFAULT 0 NOT NULL,
  typed INTEGER DEFAULT 0 NOT NULL, frecency INTEGER DEFAULT -1 NOT NULL,
  last_visit_date INTEGER , guid TEXT, foreign_count INTEGER DEFAULT 0 NOT NULL,
  url_hash INTEGER DEFAULT 0 NOT NULL , description TEXT, preview_image_url TEXT,
  site_name TEXT, origin_id INTEGER REFERENCES moz_origins(id),
  recalc_frecency INTEGER NOT NULL DEFAULT 0, alt_frecency INTEGER,
  recalc_alt_frecency INTEGER NOT NULL DEFAULT 0);
CREATE TABLE moz_historyvisits (  id INTEGER PRIMARY KEY, from_visit INTEGER,
  place_id INTEGER, visit_date INTEGER, visit_type INTEGER, session INTEGER,
  source INTEGER DEFAULT 0 NOT NULL, triggeringPlaceId INTEGER);
CREATE INDEX moz_places_url_hashindex ON moz_places (url_hash);
CREATE INDEX moz_places_hostindex ON moz_places (rev_host);
CREATE INDEX moz_places_visitcount ON moz_places (visit_count);
CREATE INDEX moz_places_frecencyindex ON moz_places (frecency);
CREATE INDEX moz_places_lastvisitdateindex ON moz_places (last_visit_date);
CREATE UNIQUE INDEX moz_places_guid_uniqueindex ON moz_places (guid);
CREATE INDEX moz_places_originidindex ON moz_places (origin_id);
CREATE INDEX moz_historyvisits_placedateindex ON moz_historyvisits (place_id, visit_date);
CREATE INDEX moz_historyvisits_fromindex ON moz_historyvisits (from_visit);
CREATE INDEX moz_historyvisits_dateindex ON moz_historyvisits (visit_date);
"""


class Places:
    """A Firefox places.sqlite kept open like a running Firefox keeps it.

    WAL mode, no automatic checkpoint and an exclusive lock: the visits stay in the
    -wal file (which ``immutable=1`` would not see) and other readers are locked out.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA page_size = 32768")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA wal_autocheckpoint = 0")
        self.db.executescript(FIREFOX_SCHEMA)
        self.db.execute("PRAGMA locking_mode = EXCLUSIVE")
        self.db.execute("BEGIN IMMEDIATE")  # takes the lock now, as Firefox does at start
        self.db.execute("COMMIT")

    def visit(self, url: str, title: str | None, when_us: int, visit_type: int = 1) -> int:
        """Record a visit as Firefox does (a moz_places row, a moz_historyvisits row)."""
        row = self.db.execute("SELECT id FROM moz_places WHERE url = ?", (url,)).fetchone()
        if row is None:
            place = self.db.execute(
                "INSERT INTO moz_places (url, title, rev_host, visit_count, last_visit_date, guid)"
                " VALUES (?, ?, '', 1, ?, hex(randomblob(6)))",
                (url, title, when_us),
            ).lastrowid
        else:
            place = row[0]
        visit = self.db.execute(
            "INSERT INTO moz_historyvisits (from_visit, place_id, visit_date, visit_type, session)"
            " VALUES (0, ?, ?, ?, 0)",
            (place, when_us, visit_type),
        ).lastrowid
        assert visit is not None
        return visit

    def forget(self, visit_id: int) -> None:
        self.db.execute("DELETE FROM moz_historyvisits WHERE id = ?", (visit_id,))

    def close(self) -> None:
        self.db.close()


# ---- time -----------------------------------------------------------------------------


def test_chromium_epoch_conversion_is_exact() -> None:
    epoch_1601 = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
    epoch_1970 = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    one_us = dt.timedelta(microseconds=1)
    assert (epoch_1970 - epoch_1601) // one_us == CHROMIUM_EPOCH_OFFSET_US
    assert chromium_time_to_unix_us(CHROMIUM_EPOCH_OFFSET_US) == 0
    moment = dt.datetime(2024, 2, 29, 23, 59, 58, 987_654, tzinfo=dt.UTC)
    chromium = (moment - epoch_1601) // one_us
    assert chromium == 13_353_724_798_987_654
    assert chromium_time_to_unix_us(chromium) == (moment - epoch_1970) // one_us
    assert chromium_time_to_unix_us(chromium) == 1_709_251_198_987_654
    assert unix_us_to_chromium_time(chromium_time_to_unix_us(chromium)) == chromium
    # A visit_time Debian Chromium 156 wrote here, at 21:10:18.77 UTC per its own log.
    recorded = dt.datetime(2026, 11, 26, 21, 10, 18, 770_763, tzinfo=dt.UTC)
    assert chromium_time_to_unix_us(13_440_201_018_770_763) == (recorded - epoch_1970) // one_us


# ---- where the histories are ------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_finds_every_browser_and_profile(tmp_path: Path) -> None:
    home_dir = tmp_path / "alice"
    for data_dir in (
        ".config/chromium",
        ".config/google-chrome",
        ".config/microsoft-edge",
        ".config/BraveSoftware/Brave-Browser",
    ):
        _touch(home_dir / data_dir / "Default" / "History")
    _touch(home_dir / ".config/chromium/Profile 3/History")
    _touch(home_dir / ".config/google-chrome-beta/Profile 1/History")
    # Not profiles of their own: skipped.
    _touch(home_dir / ".config/chromium/Guest Profile/History")
    _touch(home_dir / ".config/chromium/System Profile/History")
    _touch(home_dir / ".config/chromium/Profile X/History")
    _touch(home_dir / ".config/chromium/Profile 4/Preferences")  # no history yet
    firefox = home_dir / ".mozilla/firefox"
    outside = tmp_path / "elsewhere" / "work.profile"
    _touch(firefox / "ab12cd34.default-release/places.sqlite")
    _touch(outside / "places.sqlite")
    _touch(firefox / "zz99.made-by-hand/places.sqlite")  # not in profiles.ini: globbed
    (firefox / "profiles.ini").write_text(
        "[Install4F96D1932A9F858E]\nDefault=ab12cd34.default-release\nLocked=1\n\n"
        "[Profile0]\nName=default-release\nIsRelative=1\nPath=ab12cd34.default-release\n"
        f"Default=1\n\n[Profile1]\nName=work\nIsRelative=0\nPath={outside}\n\n"
        "[Profile2]\nName=gone\nIsRelative=1\nPath=missing.profile\n\n"
        "[General]\nStartWithLastProfile=1\nVersion=2\n"
    )
    (home,) = homes_at([home_dir])

    found = {(h.browser, h.profile, h.engine, h.path) for h in find_history_files([home], ALL)}

    config = home_dir / ".config"
    assert found == {
        ("chromium", "Default", "chromium", config / "chromium/Default/History"),
        ("chromium", "Profile 3", "chromium", config / "chromium/Profile 3/History"),
        ("chrome", "Default", "chromium", config / "google-chrome/Default/History"),
        ("chrome", "Profile 1", "chromium", config / "google-chrome-beta/Profile 1/History"),
        ("edge", "Default", "chromium", config / "microsoft-edge/Default/History"),
        ("brave", "Default", "chromium", config / "BraveSoftware/Brave-Browser/Default/History"),
        ("firefox", "ab12cd34.default-release", "firefox",
         firefox / "ab12cd34.default-release/places.sqlite"),
        ("firefox", str(outside), "firefox", outside / "places.sqlite"),
        ("firefox", "zz99.made-by-hand", "firefox", firefox / "zz99.made-by-hand/places.sqlite"),
    }  # fmt: skip
    only = find_history_files([home], ["edge", "firefox"])
    assert {h.browser for h in only} == {"edge", "firefox"}


ALL = ["chromium", "chrome", "edge", "brave", "firefox"]


def test_histories_not_owned_by_the_user_are_ignored(tmp_path: Path) -> None:
    """A user cannot make the agent (root) read another file as their history."""
    home_dir = tmp_path / "mallory"
    home_dir.mkdir()
    os.chown(home_dir, NOBODY, NOBODY)
    secret = _touch(tmp_path / "someone-else" / "History")
    linked = home_dir / ".config/chromium/Default/History"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(secret)
    foreign = _touch(home_dir / ".config/google-chrome/Default/History")
    os.chown(foreign, 4242, 4242)  # another uid's file
    own = _touch(home_dir / ".config/microsoft-edge/Default/History")
    os.chown(own, NOBODY, NOBODY)
    by_root = _touch(home_dir / ".config/BraveSoftware/Brave-Browser/Default/History")

    (home,) = homes_at([home_dir])

    assert home.user == "nobody"
    assert {h.path for h in find_history_files([home], ALL)} == {own, by_root}


def test_local_homes_are_attributed_to_their_owners(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "bob").mkdir(parents=True)
    os.chown(root / "bob", NOBODY, NOBODY)
    (root / "not-a-home").write_text("")
    listed = tmp_path / "srv-carol"
    listed.mkdir()
    accounts = tmp_path / "passwd"
    accounts.write_text(
        f"root:x:0:0:root:/root:/bin/bash\ncarol:x:1500:1500::{listed}:/bin/bash\n"
        f"daemon:x:1:1::{tmp_path}:/usr/sbin/nologin\n"
    )

    homes = {h.path: h for h in local_homes([root], accounts_file=accounts)}

    assert homes[root / "bob"] == Home(root / "bob", NOBODY, "nobody")
    assert homes[listed].user == "root"  # the folder's owner, not the passwd entry's name
    assert homes[Path("/root").resolve()].uid == 0  # root's home is always searched
    assert tmp_path not in homes  # system accounts are not
    assert root / "not-a-home" not in homes


# ---- reading Firefox ------------------------------------------------------------------


def firefox_history(home_dir: Path, places: Path) -> HistoryFile:
    (home,) = homes_at([home_dir])
    return HistoryFile(places, "firefox", "firefox", places.parent.name, home)


def test_firefox_reader_sees_visits_still_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / ".mozilla/firefox/p.default/places.sqlite"
    places = Places(path)
    try:
        base = 1_700_000_000_123_456
        first = places.visit("https://example.org/a", "Page A", base, visit_type=2)
        second = places.visit("https://example.org/b", None, base + 5_000_000, visit_type=5)
        state = history_state(path)
        assert state is not None
        assert state.wal[0] > 0  # the visits are only in the WAL: the reader must copy it
        other = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("SELECT count(*) FROM moz_historyvisits").fetchone()
        other.close()

        history = firefox_history(tmp_path, path)
        read = read_history(history, after_id=None, after_time_us=0)

        assert [(v.visit_id, v.url, v.title, v.time_us, v.transition) for v in read.visits] == [
            (first, "https://example.org/a", "Page A", base, "typed"),
            (second, "https://example.org/b", "", base + 5_000_000, "redirect"),
        ]
        assert (read.max_id, read.max_time_us) == (second, base + 5_000_000)
        again = read_history(history, after_id=read.max_id, after_time_us=read.max_time_us)
        assert again.visits == []

        # Firefox's ids are not AUTOINCREMENT: forget the newest visit and the next
        # one gets its id back. The later time still finds it.
        places.forget(second)
        reused = places.visit("https://example.org/c", "Page C", base + 9_000_000)
        assert reused == second
        newer = read_history(history, after_id=read.max_id, after_time_us=read.max_time_us)
        assert [(v.visit_id, v.url) for v in newer.visits] == [(reused, "https://example.org/c")]
    finally:
        places.close()


def test_a_corrupt_history_is_reported_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "places.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryUnreadable, match=r"places\.sqlite: "):
        read_history(firefox_history(tmp_path, path), after_id=None, after_time_us=0)


# ---- reading Chromium -----------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A History written by a real headless Chromium that visited one page, closed."""
    home_dir = tmp_path_factory.mktemp("chromium-home")
    pages = Pages({"first": "Sekimori first page"})
    data_dir = home_dir / ".config/chromium"
    started = now_us()
    browser = Chromium(data_dir, [pages.url("first")])
    try:
        browser.wait_for_title("Sekimori first page")
    finally:
        browser.close()
        pages.close()
    history = data_dir / "Default" / "History"
    assert chromium_visits(history), "Chromium recorded no visit"
    yield history, started


def test_chromium_reader_reads_a_real_history(
    chromium_history: tuple[Path, int], tmp_path: Path
) -> None:
    source, started = chromium_history
    history = HistoryFile(source, "chromium", "chromium", "Default", Home(tmp_path, 0, "root"))

    read = read_history(history, after_id=None, after_time_us=started - 1)

    (visit,) = read.visits
    assert visit.url.startswith("http://127.0.0.1:") and visit.url.endswith("/first")
    assert visit.title == "Sekimori first page"
    assert started <= visit.time_us <= now_us()
    assert visit.transition == "typed"  # a URL given on the command line
    assert (read.max_id, read.max_time_us) == (visit.visit_id, visit.time_us)
    later = read_history(history, after_id=read.max_id, after_time_us=read.max_time_us)
    assert later.visits == []


def test_chromium_reader_skips_synced_and_imported_visits(
    chromium_history: tuple[Path, int], tmp_path: Path
) -> None:
    """Visits from another device or another browser are not browsing on this PC."""
    path = tmp_path / "History"
    path.write_bytes(chromium_history[0].read_bytes())
    history = HistoryFile(path, "chromium", "chromium", "Default", Home(tmp_path, 0, "root"))
    first = read_history(history, after_id=None, after_time_us=0)
    when = unix_us_to_chromium_time(now_us())
    db = sqlite3.connect(path)
    with db:
        url = db.execute(
            "INSERT INTO urls (url, title, visit_count, last_visit_time)"
            " VALUES ('https://elsewhere.example/', 'Elsewhere', 1, ?)",
            (when,),
        ).lastrowid

        def add_visit(guid: str) -> int:
            visit = db.execute(
                "INSERT INTO visits (url, visit_time, transition, originator_cache_guid)"
                " VALUES (?, ?, 0, ?)",
                (url, when, guid),
            ).lastrowid
            assert visit is not None
            return visit

        synced = add_visit("other-device-cache-guid")
        imported = add_visit("")
        db.execute("INSERT INTO visit_source (id, source) VALUES (?, 3)", (imported,))
        local = add_visit("")
    db.close()

    read = read_history(history, after_id=first.max_id, after_time_us=first.max_time_us)

    assert [v.visit_id for v in read.visits] == [local]
    assert read.visits[0].transition == "link"
    assert read.max_id == local > imported > synced  # all are behind the high-water mark


def test_a_history_crafted_to_never_finish_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user writes the file: `visits` may be a view over an endless recursive query.
    The read must give up, not hang the collector (fixture: a hostile SQLite file)."""
    path = tmp_path / "History"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE urls (id INTEGER PRIMARY KEY, url TEXT, title TEXT);"
        "CREATE TABLE visit_source (id INTEGER PRIMARY KEY, source INTEGER);"
        "CREATE VIEW visits AS WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 "
        "FROM n) SELECT id, 1 AS url, 0 AS visit_time, 0 AS transition FROM n;"
    )
    db.close()
    monkeypatch.setattr(browsers, "MAX_QUERY_SECONDS", 0.5)
    home = browsers.Home(tmp_path, os.getuid(), "me")
    history = browsers.HistoryFile(path, "chromium", "chromium", "Default", home)
    started = time.monotonic()
    with pytest.raises(browsers.HistoryUnreadable, match="interrupted"):
        browsers.read_history(history, after_id=None, after_time_us=0)
    assert time.monotonic() - started < 10


def test_a_symlinked_profile_folder_outside_the_home_is_not_trusted(tmp_path: Path) -> None:
    """~/.config/chromium -> another account's folder: not this user's history."""
    other = tmp_path / "other" / "Default"
    other.mkdir(parents=True)
    (other / "History").write_bytes(b"")
    home_dir = tmp_path / "home"
    (home_dir / ".config").mkdir(parents=True)
    (home_dir / ".config" / "chromium").symlink_to(tmp_path / "other")
    # The user is uid 4242 here; the linked-to History belongs to root (the test's uid).
    home = browsers.Home(home_dir, 4242, "me")
    found = browsers.find_history_files([home], ["chromium"])
    assert found == []
