"""The web collector: every page visit recorded by local users' browsers.

Each tick (``interval_seconds``) finds the history databases of Chromium, Google
Chrome, Microsoft Edge, Brave and Firefox in every local home (see
``sekimori.agent.platform.linux.browsers``), looks at each file's size and mtime
(and those of its ``-wal`` / ``-journal``), and opens only the ones that changed.
Each new visit becomes a ``web.visit`` event whose time is the visit time and whose
``os_user`` is the owner of the home.

Never re-sent, never lost: the cursor (saved in the same outbox transaction as the
events) holds, per history file, the inode and the highest visit id and visit time
of the last snapshot read. The next read takes visits with a higher id *or* a later
time, so:

* a restart of the agent continues where it stopped;
* Firefox reusing ids after the newest visits were deleted (its ids are not
  AUTOINCREMENT) still finds the new visits, by time;
* a file replaced by another (new inode: restored from a backup, profile recreated)
  is read by time alone from the last reported visit time: its old visits are not
  sent again, ids counted in the previous file are ignored;
* a history seen for the first time is read from ``since_us`` (the collector's first
  start minus ``backfill_hours``), so the agent's first run reports the recent past
  and a profile created later is reported from its first visit.

Cursor entries of histories that disappear are kept (a few bytes each): a home that
is briefly unmounted must not be re-read from ``since_us`` when it comes back.

Not covered: visits that Firefox Sync brings from another device look like local
visits in places.sqlite and are reported (Chromium's foreign and imported visits are
recognised and skipped); a page's title is its latest one, not the one at the visit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorSettings
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux.browsers import (
    FileState,
    HistoryFile,
    HistoryUnreadable,
    Visit,
    find_history_files,
    history_state,
    homes_at,
    local_homes,
    read_history,
)
from sekimori.clock import now_us
from sekimori.protocol.events import AgentLog
from sekimori.protocol.events.web import Browser, WebVisit

__all__ = ["WebCollector", "WebSettings", "host_excluded", "visit_event"]

log = logging.getLogger(__name__)

_ALL_BROWSERS: tuple[Browser, ...] = ("chromium", "chrome", "edge", "brave", "firefox")
# Bounds on what one event carries: data: URLs can be megabytes long.
MAX_URL_CHARS = 4096
MAX_TITLE_CHARS = 1024
_US_PER_HOUR = 3_600_000_000


class WebSettings(CollectorSettings, kw_only=True):
    """Settings of the web collector (``agent.collectors.web``)."""

    interval_seconds: float = 10.0
    browsers: list[Browser] = msgspec.field(default_factory=lambda: list(_ALL_BROWSERS))
    # A visit to one of these domains or any subdomain of it is not reported.
    exclude_domains: list[str] = msgspec.field(default_factory=list)
    # Browser-internal pages (new tab, settings, extensions) are noise, not web access.
    exclude_schemes: list[str] = msgspec.field(
        default_factory=lambda: [
            "about",
            "brave",
            "chrome",
            "chrome-extension",
            "chrome-search",
            "chrome-untrusted",
            "devtools",
            "edge",
            "moz-extension",
        ]
    )
    # Record only scheme://host/ of each visit, and no title.
    mask_urls_to_domain: bool = False
    # On the first run, also report the visits of this many hours before it.
    backfill_hours: float = 24.0
    # Folders whose subfolders are homes, besides those of /etc/passwd and root's.
    home_roots: list[str] = msgspec.field(default_factory=lambda: ["/home"])
    # When set, exactly these homes are searched and nothing else (unusual layouts, tests).
    homes: list[str] | None = None


class _FileCursor(msgspec.Struct, array_like=True):
    ino: int
    last_id: int
    last_time_us: int


class _Cursor(msgspec.Struct):
    since_us: int  # a history seen for the first time is read from this visit time on
    files: dict[str, _FileCursor] = msgspec.field(default_factory=dict)


_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(_Cursor)


class WebCollector(Collector):
    name = "web"
    settings_type = WebSettings

    def run(self, stop: threading.Event) -> None:
        settings = self.settings
        if not isinstance(settings, WebSettings):
            raise TypeError(f"web collector needs WebSettings, not {type(settings).__name__}")
        cursor = self._load_cursor(settings)
        seen: dict[str, FileState] = {}  # on-disk state at the last good read, per file
        errors: dict[str, str] = {}  # last error reported, per file
        while True:
            self._tick(settings, cursor, seen, errors)
            if stop.wait(settings.interval_seconds):
                return

    def _load_cursor(self, settings: WebSettings) -> _Cursor:
        raw = self.sink.cursor()
        if raw is not None:
            try:
                return _cursor_decoder.decode(raw)
            except msgspec.DecodeError:
                log.warning("web collector: cursor unreadable, starting a new one")
        cursor = _Cursor(since_us=now_us() - int(settings.backfill_hours * _US_PER_HOUR))
        # Saved at once, so the first run (and its backfill window) is fixed for good.
        self.sink.emit_many([], cursor=_cursor_encoder.encode(cursor))
        return cursor

    def _tick(
        self,
        settings: WebSettings,
        cursor: _Cursor,
        seen: dict[str, FileState],
        errors: dict[str, str],
    ) -> None:
        if settings.homes is not None:
            homes = homes_at(settings.homes)
        else:
            homes = local_homes(settings.home_roots)
        events: list[PendingEvent] = []
        advanced = False
        for history in find_history_files(homes, settings.browsers):
            key = str(history.path)
            state = history_state(history.path)
            if state is None or seen.get(key) == state:
                continue  # unchanged since the last read: not even opened
            known = cursor.files.get(key)
            if known is None:
                after_id, after_time = None, cursor.since_us
            elif known.ino != state.ino:
                log.info("web collector: %s was replaced, reading it by visit time", key)
                after_id, after_time = None, known.last_time_us
            else:
                after_id, after_time = known.last_id, known.last_time_us
            try:
                read = read_history(history, after_id=after_id, after_time_us=after_time)
            except HistoryUnreadable as exc:
                if exc.transient:
                    log.debug("web collector: will read again: %s", exc)
                    continue
                seen[key] = state  # not tried again until the file changes
                if errors.get(key) != str(exc):
                    # Once per distinct error: the server learns that this history is
                    # not being reported, and why, without a message every tick.
                    errors[key] = str(exc)
                    log.warning("web collector: cannot read a history, will retry: %s", exc)
                    self.sink.emit(
                        "agent.log",
                        AgentLog(level="warning", source="collector.web", message=str(exc)[:1000]),
                    )
                continue
            errors.pop(key, None)
            seen[key] = read.state
            for visit in read.visits:
                event = visit_event(settings, history, visit)
                if event is not None:
                    events.append(event)
            # Everything in the snapshot is now handled (reported or excluded); a file
            # read by time keeps its time mark even if it holds only older visits.
            updated = _FileCursor(read.state.ino, read.max_id, max(read.max_time_us, after_time))
            if updated != known:
                cursor.files[key] = updated
                advanced = True
        if events or advanced:
            self.sink.emit_many(events, cursor=_cursor_encoder.encode(cursor))


def visit_event(settings: WebSettings, history: HistoryFile, visit: Visit) -> PendingEvent | None:
    """The ``web.visit`` event of one visit, or None when the policy excludes it."""
    try:
        parts = urlsplit(visit.url)
        host = parts.hostname or ""
    except ValueError:  # e.g. a malformed IPv6 literal: report it, but it has no host
        parts, host = urlsplit(""), ""
    scheme = parts.scheme.lower()
    if scheme in settings.exclude_schemes or host_excluded(host, settings.exclude_domains):
        return None
    url, title = visit.url, visit.title
    if "@" in parts.netloc:
        # Credentials typed into an address (https://user:secret@host/) never leave the PC.
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    if settings.mask_urls_to_domain:
        netloc = f"[{host}]" if ":" in host else host
        url, title = (f"{scheme}://{netloc}/" if scheme else ""), ""
    payload = WebVisit(
        url=url[:MAX_URL_CHARS],
        title=title[:MAX_TITLE_CHARS],
        host=host,
        browser=history.browser,
        profile=history.profile,
        transition=visit.transition,
        masked=settings.mask_urls_to_domain,
    )
    return PendingEvent("web.visit", payload, os_user=history.home.user, time_us=visit.time_us)


def host_excluded(host: str, domains: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one (case-insensitive)."""
    host = host.lower().rstrip(".")
    for entry in domains:
        domain = entry.lower().strip().removeprefix("*.").strip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False
