"""The window collector against a real X desktop: Xvfb + openbox, real xterm windows
focused with xdotool (through the window manager, as a click would), titles changed by
the program itself (an escape sequence printed in the terminal) and from outside,
real input (XTEST mouse motion) ending real idleness, and a real crash (SIGKILL of
a process running the collector).

Wayland cannot run here; its detection is driven by the environment variables a
Wayland session sets, which is all the collector looks at.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.collectors.window import WindowCollector, WindowSettings
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.window import (
    FocusSpan,
    WindowActive,
    WindowFocus,
    WindowIdle,
    WindowInfo,
)
from tests.desktop import Desktop, XTerm, desktop_fixture  # noqa: F401  (the fixture)
from tests.processes import wait_for

ME = pwd.getpwuid(os.getuid()).pw_name
WAIT = 15.0
P = TypeVar("P", bound=Payload)


# ---- helpers ---------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    try:
        yield box
    finally:
        box.close()


class Recorded:
    """The collector's events in the outbox, decoded: (time_us, os_user, payload)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def all(self) -> list[tuple[int, str | None, Payload]]:
        events = self.outbox.peek(0, max_events=10_000, max_bytes=1 << 30)
        return [
            (e.time_us, e.os_user, decode_payload(e.kind, e.payload))
            for e in events
            if e.kind.startswith("window.")
        ]

    def wait(
        self, kind: type[P], match: Callable[[P], bool] = lambda p: True, after: int = 0
    ) -> tuple[int, str | None, P]:
        """The first event of type ``kind`` at index >= ``after`` that ``match``es."""
        found: list[tuple[int, str | None, P]] = []

        def seen() -> bool:
            for time_us, user, payload in self.all()[after:]:
                if isinstance(payload, kind) and match(payload):
                    found.append((time_us, user, payload))
                    return True
            return False

        wait_for(seen, WAIT, f"a {kind.__name__} event", 0.02)
        return found[0]

    def count(self) -> int:
        return len(self.all())


@contextmanager
def running(collector: WindowCollector) -> Iterator[list[BaseException]]:
    """Run the collector in a thread; on exit stop it and re-raise what it raised."""
    stop = threading.Event()
    raised: list[BaseException] = []

    def target() -> None:
        try:
            collector.run(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=target, name="window-collector-test")
    thread.start()
    try:
        yield raised
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the collector did not stop within 10 s"
    if raised:
        raise raised[0]


def make(outbox: Outbox, desktop: Desktop | None = None, **settings: Any) -> WindowCollector:
    if desktop is not None:
        settings.setdefault("display", desktop.display)
        settings.setdefault("xauthority", str(desktop.xauthority))
    conf = msgspec.convert(settings, WindowSettings)
    return WindowCollector(conf, Sink(outbox, "window"))


def is_window(info: WindowInfo | None, term: XTerm, title: str | None = None) -> bool:
    return (
        info is not None and info.window == term.window and (title is None or info.title == title)
    )


def check_span(span: FocusSpan | None, time_us: int, term: XTerm) -> FocusSpan:
    """The span ended at the event's time and was ``term``'s."""
    assert span is not None
    assert span.window.window == term.window
    assert span.duration_us >= 0
    assert span.start_us + span.duration_us == time_us
    return span


# ---- focus and titles ------------------------------------------------------------------


def test_focus_changes_report_window_application_and_durations(
    outbox: Outbox, desktop: Desktop
) -> None:
    alpha = desktop.xterm("alpha")
    beta = desktop.xterm("beta")
    desktop.focus(alpha.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop)):
        t0, user, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert start.previous is None
        assert start.window == WindowInfo(
            window=alpha.window,
            title="alpha",
            title_hidden=False,
            application="XTerm",
            instance="xterm",
            pid=alpha.pid,
            exe="/usr/bin/xterm",
            user=ME,
        )
        assert user == ME

        desktop.focus(beta.window)
        t1, _, to_beta = events.wait(WindowFocus, lambda p: is_window(p.window, beta))
        assert to_beta.cause == "focus"
        assert to_beta.window is not None
        assert (to_beta.window.title, to_beta.window.pid) == ("beta", beta.pid)
        span = check_span(to_beta.previous, t1, alpha)
        assert span.start_us == t0
        assert span.window == start.window

        desktop.focus(alpha.window)
        t2, _, back = events.wait(WindowFocus, lambda p: is_window(p.window, alpha), after=2)
        assert check_span(back.previous, t2, beta).start_us == t1

    # A clean stop ends the open span too, so no focused time is left uncounted.
    last_time, _, last = events.all()[-1]
    assert isinstance(last, WindowFocus)
    assert (last.cause, last.window) == ("stop", None)
    assert check_span(last.previous, last_time, alpha).start_us == t2

    # Time per application: one sum over the ended spans covers all watched time.
    spans = [p.previous for _, _, p in events.all() if isinstance(p, WindowFocus) and p.previous]
    assert sum(s.duration_us for s in spans) == last_time - t0
    per_app: dict[str, int] = {}
    for s in spans:
        per_app[s.window.application] = per_app.get(s.window.application, 0) + s.duration_us
    assert list(per_app) == ["XTerm"]


def test_title_changes_by_the_program_and_from_outside(outbox: Outbox, desktop: Desktop) -> None:
    term = desktop.xterm("editing draft.txt")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, title_min_interval_seconds=0)):
        t0, _, _ = events.wait(WindowFocus, lambda p: p.cause == "start")
        # The program changes its own title (xterm sets _NET_WM_NAME, UTF-8).
        term.write("\033]0;editing 報告書.txt\007")
        t1, _, changed = events.wait(WindowFocus, lambda p: p.cause == "title")
        assert changed.window is not None
        assert changed.window.title == "editing 報告書.txt"
        assert changed.window.pid == term.pid
        span = check_span(changed.previous, t1, term)
        assert (span.window.title, span.start_us) == ("editing draft.txt", t0)
        # Another client renames the window (xdotool sets WM_NAME).
        desktop.set_title(term.window, "renamed")
        t2, _, renamed = events.wait(
            WindowFocus, lambda p: is_window(p.window, term, "renamed"), after=2
        )
        assert renamed.cause == "title"
        assert check_span(renamed.previous, t2, term).window.title == "editing 報告書.txt"


def test_fast_title_changes_are_coalesced(outbox: Outbox, desktop: Desktop) -> None:
    """A title that changes faster than title_min_interval_seconds (a progress
    counter) yields one event with the latest title, not one per change."""
    term = desktop.xterm("progress 0%")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, title_min_interval_seconds=1.5)):
        events.wait(WindowFocus, lambda p: p.cause == "start")
        term.write("\033]0;progress 10%\007")
        events.wait(WindowFocus, lambda p: is_window(p.window, term, "progress 10%"))
        for percent in (20, 30, 40):  # all within the 1.5 s that follow
            term.write(f"\033]0;progress {percent}%\007")
        _, _, latest = events.wait(
            WindowFocus, lambda p: is_window(p.window, term, "progress 40%"), after=2
        )
        assert latest.previous is not None
        assert latest.previous.window.title == "progress 10%"
    titles = [p.window.title for _, _, p in events.all() if isinstance(p, WindowFocus) and p.window]
    assert titles == ["progress 0%", "progress 10%", "progress 40%"]


def test_record_titles_false_withholds_every_title(outbox: Outbox, desktop: Desktop) -> None:
    first = desktop.xterm("private mail")
    second = desktop.xterm("private chat")
    desktop.focus(first.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, record_titles=False)):
        _, _, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert start.window is not None
        assert (start.window.title, start.window.title_hidden) == ("", True)
        assert (start.window.application, start.window.exe) == ("XTerm", "/usr/bin/xterm")
        # A withheld title's changes are not events (they would leak activity).
        desktop.set_title(first.window, "private mail (1 unread)")
        desktop.focus(second.window)
        _, _, to_second = events.wait(WindowFocus, lambda p: is_window(p.window, second))
        assert to_second.window is not None
        assert to_second.window.title == ""
    payloads = [p for _, _, p in events.all()]
    assert [p.cause for p in payloads if isinstance(p, WindowFocus)] == ["start", "focus", "stop"]
    stored = outbox.peek(0, max_events=100, max_bytes=1 << 30)
    assert not any(b"private" in bytes(e.payload) for e in stored)


def test_excluded_applications_have_no_titles(outbox: Outbox, desktop: Desktop) -> None:
    """Exclusions match WM_CLASS instance or class names, case-insensitively."""
    banking = desktop.xterm("account 1234-5678", args=("-name", "banking"))
    normal = desktop.xterm("build log")
    desktop.focus(banking.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, exclude_applications=["BANKING"])):
        _, _, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert start.window is not None
        assert (start.window.instance, start.window.title, start.window.title_hidden) == (
            "banking",
            "",
            True,
        )
        desktop.focus(normal.window)
        _, _, shown = events.wait(WindowFocus, lambda p: is_window(p.window, normal))
        assert shown.window is not None
        assert (shown.window.title, shown.window.title_hidden) == ("build log", False)
        assert shown.previous is not None
        assert shown.previous.window.title == ""


def test_window_of_another_user(outbox: Outbox, desktop: Desktop) -> None:
    """The agent runs as root; the window belongs to another account's process (a real
    xterm run as ``nobody``): the event names that user."""
    if os.getuid() != 0:
        pytest.skip("starting a process as another user needs root")
    # The session's cookie is private to its owner; let ``nobody`` read it here.
    desktop.xauthority.chmod(0o644)
    desktop.xauthority.parent.chmod(0o755)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    desktop.spawn([*as_nobody, "xterm", "-xrm", "*wmTimeout: 100", "-T", "nobody's terminal"])
    window = desktop.wait_window("nobody's terminal")
    desktop.focus(window)
    events = Recorded(outbox)
    with running(make(outbox, desktop)):
        _, os_user, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert start.window is not None
        assert (start.window.window, start.window.user) == (window, "nobody")
        assert start.window.exe == "/usr/bin/xterm"
        assert os_user == "nobody"


def test_no_focused_window(outbox: Outbox, desktop: Desktop) -> None:
    """When the focused window closes and nothing else has focus, the event says so."""
    term = desktop.xterm("closing soon")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop)):
        events.wait(WindowFocus, lambda p: p.cause == "start")
        term.proc.terminate()
        term.proc.wait(10)
        t1, _, gone = events.wait(WindowFocus, lambda p: p.cause == "focus")
        assert gone.window is None
        check_span(gone.previous, t1, term)


@pytest.mark.slow
def test_switching_between_xterm_and_chromium(
    outbox: Outbox, desktop: Desktop, tmp_path: Path
) -> None:
    """A real Chromium window (Debian's, run as root: --no-sandbox): its class, its
    browser process behind the /usr/bin/chromium wrapper, and a page that retitles
    itself when a key is typed into it."""
    page = (
        "<title>Quarterly report</title>"
        "<script>onkeydown = () => { document.title = 'Quarterly report (edited)' }</script>"
    )
    term = desktop.xterm("terminal")
    desktop.spawn(
        [
            "chromium",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"data:text/html,{page}",
        ]
    )
    browser = desktop.wait_window("Quarterly report - Chromium", timeout=60)
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, title_min_interval_seconds=0)):
        events.wait(WindowFocus, lambda p: p.cause == "start")
        desktop.focus(browser)
        t1, _, to_browser = events.wait(
            WindowFocus, lambda p: p.window is not None and p.window.window == browser
        )
        info = to_browser.window
        assert info is not None
        assert info.application == "Chromium"
        # Chromium names a non-default profile folder in its WM_CLASS instance.
        assert info.instance == f"chromium ({tmp_path / 'chromium'})"
        assert info.exe == "/usr/lib/chromium/chromium"
        assert info.pid is not None
        assert info.user == ME
        check_span(to_browser.previous, t1, term)
        desktop.xdotool("key", "x")  # real keyboard input, to the focused browser
        _, _, edited = events.wait(
            WindowFocus,
            lambda p: (
                p.window is not None and p.window.title == "Quarterly report (edited) - Chromium"
            ),
        )
        assert edited.cause == "title"
        assert edited.previous is not None
        assert edited.previous.window.application == "Chromium"


# ---- idle --------------------------------------------------------------------------------


def test_idle_and_active(outbox: Outbox, desktop: Desktop) -> None:
    """Nobody touches the new Xvfb, so it goes idle; XTEST mouse motion is input."""
    term = desktop.xterm("reading")
    other = desktop.xterm("other")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop, idle_seconds=1, interval_seconds=0.2)):
        t_idle, user, idle = events.wait(WindowIdle)
        assert user == ME
        assert idle.threshold_ms == 1000
        # The span ends when input stopped (or when it began, if input had already
        # stopped then): idle time is not counted as use of the application.
        span = check_span(idle.previous, t_idle, term)
        assert t_idle == max(idle.idle_since_us, span.start_us)
        # Focus changes while idle are reported, but open no span (idle time is not use).
        desktop.focus(other.window)
        _, _, during = events.wait(WindowFocus, lambda p: is_window(p.window, other))
        assert during.previous is None

        desktop.xdotool("mousemove", "300", "300")
        t_active, _, active = events.wait(WindowActive)
        assert active.idle_since_us == idle.idle_since_us
        assert active.idle_duration_us >= 1_000_000
        assert active.idle_since_us + active.idle_duration_us == t_active
        assert is_window(active.window, other)

        desktop.focus(term.window)
        t_back, _, back = events.wait(WindowFocus, lambda p: is_window(p.window, term), after=3)
        assert check_span(back.previous, t_back, other).start_us == t_active


# ---- restarts ----------------------------------------------------------------------------

_CRASHING_RUN = """
import sys, threading
import msgspec
from sekimori.agent.collectors.base import Sink
from sekimori.agent.collectors.window import WindowCollector, WindowSettings
from sekimori.agent.outbox import Outbox
conf = msgspec.convert({"display": sys.argv[2], "xauthority": sys.argv[3]}, WindowSettings)
WindowCollector(conf, Sink(Outbox(sys.argv[1], max_bytes=1 << 30), "window")).run(
    threading.Event()
)
"""


def test_restart_after_a_crash_continues_the_span(
    outbox: Outbox, desktop: Desktop, tmp_path: Path
) -> None:
    """The agent is SIGKILLed while a window has focus; the restarted collector finds
    the same window focused and neither repeats it nor loses its start."""
    term = desktop.xterm("long task")
    other = desktop.xterm("other")
    desktop.focus(term.window)
    events = Recorded(outbox)
    args = [str(tmp_path / "o.db"), desktop.display, str(desktop.xauthority)]
    agent = subprocess.Popen([sys.executable, "-c", _CRASHING_RUN, *args])
    try:
        t0, _, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert is_window(start.window, term)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    before = events.count()
    restarted = make(outbox, desktop)
    with running(restarted):
        assert restarted.watching.wait(WAIT)
        desktop.focus(other.window)
        t1, _, moved = events.wait(WindowFocus, lambda p: is_window(p.window, other))
        assert check_span(moved.previous, t1, term).start_us == t0
    causes = [p.cause for _, _, p in events.all()[before:] if isinstance(p, WindowFocus)]
    assert causes == ["focus", "stop"]


def test_restart_after_a_clean_stop_starts_anew(outbox: Outbox, desktop: Desktop) -> None:
    term = desktop.xterm("same window")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with running(make(outbox, desktop)):
        events.wait(WindowFocus, lambda p: p.cause == "start")
    with running(make(outbox, desktop)):
        _, _, again = events.wait(WindowFocus, lambda p: p.cause == "start", after=2)
        assert is_window(again.window, term)
        assert again.previous is None


# ---- which display, and failures -------------------------------------------------------


def test_display_from_the_environment(
    outbox: Outbox, desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    term = desktop.xterm("from env")
    desktop.focus(term.window)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setenv("DISPLAY", desktop.display)
    monkeypatch.setenv("XAUTHORITY", str(desktop.xauthority))
    events = Recorded(outbox)
    with running(make(outbox)):
        _, _, start = events.wait(WindowFocus, lambda p: p.cause == "start")
        assert is_window(start.window, term, "from env")


def test_wayland_is_a_permanent_error(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    with pytest.raises(CollectorError, match=r"titles .*unavailable on Wayland") as caught:
        make(outbox).run(threading.Event())
    assert caught.value.permanent
    assert Recorded(outbox).count() == 0


def test_remote_display_is_a_permanent_error(outbox: Outbox) -> None:
    """Collectors never use the network: a display on another host is refused."""
    with pytest.raises(CollectorError, match="not a local X display") as caught:
        make(outbox, display="192.0.2.1:0").run(threading.Event())
    assert caught.value.permanent


def test_no_x_display_is_a_permanent_error(
    outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PC with no X server: no DISPLAY, no socket (an empty socket folder here,
    since this machine's real one holds other tests' displays), no session."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "proc").mkdir()

    class Headless(WindowCollector):
        socket_dir = tmp_path / "x11-unix"
        proc_dir = tmp_path / "proc"

    conf = msgspec.convert({}, WindowSettings)
    with pytest.raises(CollectorError, match="no X display") as caught:
        Headless(conf, Sink(outbox, "window")).run(threading.Event())
    assert caught.value.permanent


def test_no_display_after_a_session_is_retried(
    outbox: Outbox, desktop: Desktop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a display was watched, its absence means a logout: retry, the next logon
    brings one back."""
    events = Recorded(outbox)
    with running(make(outbox, desktop)):
        events.wait(WindowFocus, lambda p: p.cause == "start")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "proc").mkdir()

    class LoggedOut(WindowCollector):
        socket_dir = tmp_path / "x11-unix"
        proc_dir = tmp_path / "proc"

    conf = msgspec.convert({}, WindowSettings)
    with pytest.raises(CollectorError, match="no X display") as caught:
        LoggedOut(conf, Sink(outbox, "window")).run(threading.Event())
    assert not caught.value.permanent


def test_unreachable_display_is_retried(outbox: Outbox, desktop: Desktop, tmp_path: Path) -> None:
    """A refused connection (no cookie yet, server not up yet) may work later."""
    collector = make(outbox, desktop, xauthority=str(tmp_path / "missing-cookie"))
    with pytest.raises(CollectorError, match="cannot open X display") as caught:
        collector.run(threading.Event())
    assert not caught.value.permanent


def test_lost_display_ends_the_span_and_is_retried(outbox: Outbox, desktop: Desktop) -> None:
    """The X server exits (logout): the open span is closed, then a retryable error."""
    term = desktop.xterm("until logout")
    desktop.focus(term.window)
    events = Recorded(outbox)
    with (
        pytest.raises(CollectorError, match="lost X display") as caught,
        running(make(outbox, desktop)),
    ):
        events.wait(WindowFocus, lambda p: p.cause == "start")
        desktop.server.terminate()
        desktop.server.wait(10)
        t_end, _, end = events.wait(WindowFocus, lambda p: p.cause == "stop")
        check_span(end.previous, t_end, term)
    assert not caught.value.permanent


def test_registered_and_validated_by_the_supervisor(outbox: Outbox) -> None:
    assert COLLECTORS["window"] is WindowCollector
    with pytest.raises(CollectorConfigError, match=r"collector 'window'.*idle_minutes"):
        Supervisor(outbox, COLLECTORS, {"window": {"idle_minutes": 0}})
    with pytest.raises(CollectorConfigError, match=r"collector 'window'.*unknown_key"):
        Supervisor(outbox, COLLECTORS, {"window": {"unknown_key": 1}})
