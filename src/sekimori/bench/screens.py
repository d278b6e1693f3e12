"""``sekimori bench screens``: the agent's cost per screen frame and the stored size.

A real desktop at 1920x1080 (Xvfb + openbox) showing a typical office screen: a
Chromium window with a long page of prose (this package's own documentation text) and
two xterm windows, one paging through a source file in ``less``, one a shell listing
directories. A scripted user moves through it (focus changes through the window
manager, paging down in the browser and in ``less``, commands typed in the shell),
and after each step the screen is captured the way the screens collector captures it:

* capture: ``ScreenGrabber.grab`` (mss, MIT-SHM) of the whole monitor;
* diff: ``ChangeDetector.changed`` (64x36 grayscale thumbnail, mean difference);
* encode: for every frame that changed, each option (format, scale, quality) in turn.

Each step is also captured a second time without any change in between (what an
interval trigger sees on an idle screen): those frames must be skipped by the diff.

Printed per option: encode p50/p95, capture+diff+encode p50/p95 (wall time, and the
CPU time of the capturing thread, which other work on the machine does not inflate) and
mean stored frame size; beside them the baseline measured in the same run: the capture alone. Goals
(issue 6): <= 60 ms per captured frame at 1920x1080, mean stored frame <= 60 KB.

Exit status 0 when the run completed (whether or not the goals were met), 1 when it
failed.
"""

from __future__ import annotations

import argparse
import html
import inspect
import os
import pkgutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sekimori
from sekimori.agent.screens import ChangeDetector, ScreenGrabber, encode
from sekimori.agent.screens.encode import ImageFormat
from sekimori.bench._desktop import CHROMIUM, Desktop, missing_programs, running_desktop
from sekimori.bench._server import BenchmarkFailed

__all__ = ["GOAL_FRAME_BYTES", "GOAL_FRAME_MS", "OPTIONS", "Option", "main", "run_bench"]

GOAL_FRAME_MS = 60.0
GOAL_FRAME_BYTES = 60 * 1024
SCREEN = (1920, 1080)
# How long the screen is left to repaint after each action.
_SETTLE_SECONDS = 0.6
_START_SECONDS = 8.0


@dataclass(frozen=True)
class Option:
    format: ImageFormat
    scale: float
    quality: int

    def __str__(self) -> str:
        return f"{self.format} x{self.scale:g} q{self.quality}"


OPTIONS: tuple[Option, ...] = (
    Option("jpeg", 1.0, 70),
    Option("jpeg", 0.5, 60),
    Option("jpeg", 0.5, 70),
    Option("jpeg", 0.5, 80),
    Option("jpeg", 0.4, 60),
    Option("jpeg", 0.4, 70),
    Option("webp", 1.0, 70),
    Option("webp", 0.5, 60),
    Option("webp", 0.5, 70),
    Option("webp", 0.5, 80),
    Option("webp", 0.4, 60),
)


@dataclass
class _Samples:
    encode_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def _prose() -> str:
    """Real text for the browser page: the docstrings of this package's modules."""
    parts: list[str] = []
    root = Path(sekimori.__file__).parent
    for info in pkgutil.walk_packages([str(root)], "sekimori."):
        if info.name.startswith("sekimori.bench"):
            continue
        source = root.joinpath(*info.name.split(".")[1:])
        path = source / "__init__.py" if info.ispkg else source.with_suffix(".py")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        doc = text.split('"""')[1] if text.startswith('"""') else ""
        if doc.strip():
            parts.append(f"<h2>{html.escape(info.name)}</h2>")
            parts += [f"<p>{html.escape(p)}</p>" for p in inspect.cleandoc(doc).split("\n\n")]
    return "\n".join(parts)


def _office(desktop: Desktop, workdir: Path) -> tuple[int, int, int]:
    """Open the office screen; returns the browser's, the pager's and the shell's
    windows."""
    page = workdir / "handbook.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Handbook</title></head>"
        "<body style='font-family:sans-serif;margin:2em;line-height:1.4'>"
        f"<h1>Sekimori handbook</h1>{_prose()}</body></html>",
        encoding="utf-8",
    )
    desktop.spawn(
        [
            CHROMIUM,
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--password-store=basic",
            f"--user-data-dir={workdir / 'chromium'}",
            "--window-position=0,0",
            "--window-size=1150,1040",
            page.as_uri(),
        ]
    )
    source = Path(sekimori.__file__).parent / "agent" / "outbox.py"
    desktop.spawn(
        ["xterm", "-geometry", "100x30+1160+0", "-T", "outbox.py - less", "-e", "less", str(source)]
    )
    desktop.spawn(
        [
            "xterm",
            "-geometry",
            "100x28+1160+560",
            "-T",
            "shell",
            "-e",
            "sh",
            "-c",
            "ls -l /usr/bin | head -40; exec sh -i",
        ]
    )
    browser = _find(desktop, ["--class", "chromium"])
    pager = _find(desktop, ["--name", "^outbox.py - less$"])
    shell = _find(desktop, ["--name", "^shell$"])
    time.sleep(_START_SECONDS)  # Chromium lays out and paints the long page
    return browser, pager, shell


def _find(desktop: Desktop, args: list[str]) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            ids = desktop.run("xdotool", "search", "--onlyvisible", *args).split()
        except BenchmarkFailed:
            ids = []
        if ids:
            return int(ids[-1])
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"no window found with {' '.join(args)}")
        time.sleep(0.2)


def _actions(desktop: Desktop, browser: int, pager: int, shell: int) -> Iterator[str]:
    """What the user does, one step at a time (endless; the caller stops)."""
    listings = ["/usr/lib", "/etc", "/usr/share", "/var/lib", "/usr/include"]
    n = 0
    while True:
        n += 1
        desktop.activate(browser)
        yield "focus browser"
        desktop.run("xdotool", "key", "--window", str(browser), "Next")
        yield "page down in the browser"
        desktop.activate(pager)
        yield "focus pager"
        desktop.run("xdotool", "key", "--window", str(pager), "space")
        yield "next page in less"
        desktop.activate(shell)
        yield "focus shell"
        command = f"ls -l {listings[n % len(listings)]} | head -40\n"
        desktop.run("xdotool", "type", "--window", str(shell), "--delay", "5", command)
        yield "command in the shell"


def run_bench(steps: int, chosen: Option | None = None) -> int:
    missing = missing_programs()
    if missing:
        print(f"sekimori bench screens needs: {', '.join(missing)}", file=sys.stderr)
        return 1
    if chosen is None:
        from sekimori.agent.collectors.screens import ScreensSettings

        defaults = ScreensSettings()
        chosen = Option(defaults.format, defaults.scale, defaults.quality)
    options = OPTIONS if chosen in OPTIONS else (*OPTIONS, chosen)
    capture_ms: list[float] = []
    diff_ms: list[float] = []
    samples = {option: _Samples() for option in options}
    captured = changed = idle_captures = idle_skipped = 0
    width, height = SCREEN
    try:
        with (
            tempfile.TemporaryDirectory(prefix="sekimori-bench-screens-") as tmp,
            running_desktop(Path(tmp), f"{width}x{height}x24") as desktop,
        ):
            print(f"desktop {desktop.display} at {width}x{height}: opening windows ...")
            windows = _office(desktop, Path(tmp))
            detector = ChangeDetector(threshold=_threshold())
            with ScreenGrabber(desktop.display, str(desktop.xauthority)) as grabber:
                monitor = grabber.monitors()[0]
                if (monitor.width, monitor.height) != SCREEN:
                    raise BenchmarkFailed(f"the monitor is {monitor.width}x{monitor.height}")
                actions = _actions(desktop, *windows)
                for _ in range(steps):
                    next(actions)
                    time.sleep(_SETTLE_SECONDS)
                    t0, c0 = time.perf_counter(), time.thread_time()
                    frame = grabber.grab(monitor)
                    t1 = time.perf_counter()
                    is_new = detector.changed(0, frame)
                    t2, c2 = time.perf_counter(), time.thread_time()
                    grab_ms, cmp_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
                    captured += 1
                    capture_ms.append(grab_ms)
                    diff_ms.append(cmp_ms)
                    if is_new:
                        changed += 1
                        for option in options:
                            t3, c3 = time.perf_counter(), time.thread_time()
                            encoded = encode(
                                frame,
                                scale=option.scale,
                                format=option.format,
                                quality=option.quality,
                            )
                            enc_ms = (time.perf_counter() - t3) * 1000
                            enc_cpu = time.thread_time() - c3
                            s = samples[option]
                            s.encode_ms.append(enc_ms)
                            s.total_ms.append(grab_ms + cmp_ms + enc_ms)
                            s.cpu_ms.append((c2 - c0 + enc_cpu) * 1000)
                            s.sizes.append(len(encoded.data))
                    # The interval trigger on a screen nobody touched.
                    again = grabber.grab(monitor)
                    idle_captures += 1
                    idle_skipped += not detector.changed(0, again)
    except BenchmarkFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    _report(
        capture_ms=capture_ms,
        diff_ms=diff_ms,
        samples=samples,
        chosen=chosen,
        captured=captured,
        changed=changed,
        idle_captures=idle_captures,
        idle_skipped=idle_skipped,
    )
    return 0


def _threshold() -> float:
    from sekimori.agent.collectors.screens import ScreensSettings

    return ScreensSettings().change_threshold


def _report(
    *,
    capture_ms: list[float],
    diff_ms: list[float],
    samples: dict[Option, _Samples],
    chosen: Option,
    captured: int,
    changed: int,
    idle_captures: int,
    idle_skipped: int,
) -> None:
    load = os.getloadavg()
    print(
        f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"on {os.cpu_count()} CPUs (other work on the machine inflates wall times)"
    )
    print(
        f"{captured} steps captured, {changed} changed frames encoded; "
        f"unchanged screen: {idle_skipped}/{idle_captures} frames skipped"
    )
    print(
        f"baseline, capture alone: p50 {_pct(capture_ms, 0.5):.1f} ms  "
        f"p95 {_pct(capture_ms, 0.95):.1f} ms"
    )
    print(f"diff: p50 {_pct(diff_ms, 0.5):.1f} ms  p95 {_pct(diff_ms, 0.95):.1f} ms\n")
    print(
        f"{'option':<18}{'encode p50':>11}{'p95':>8}{'frame p50':>11}{'p95':>8}"
        f"{'frame CPU p50':>15}{'p95':>8}{'mean size':>11}"
    )
    for option, s in samples.items():
        mean_kb = statistics.fmean(s.sizes) / 1024 if s.sizes else float("nan")
        mark = "  <- chosen" if option == chosen else ""
        print(
            f"{option!s:<18}{_pct(s.encode_ms, 0.5):>9.1f}ms{_pct(s.encode_ms, 0.95):>6.1f}ms"
            f"{_pct(s.total_ms, 0.5):>9.1f}ms{_pct(s.total_ms, 0.95):>6.1f}ms"
            f"{_pct(s.cpu_ms, 0.5):>13.1f}ms{_pct(s.cpu_ms, 0.95):>6.1f}ms"
            f"{mean_kb:>8.1f} KB{mark}"
        )
    s = samples[chosen]
    if s.total_ms:
        p95 = _pct(s.total_ms, 0.95)
        mean = statistics.fmean(s.sizes)
        print(
            f"\nchosen {chosen}: capture+diff+encode p95 {p95:.1f} ms "
            f"(CPU of the agent's thread p95 {_pct(s.cpu_ms, 0.95):.1f} ms) "
            f"(goal <= {GOAL_FRAME_MS:.0f} ms: {'met' if p95 <= GOAL_FRAME_MS else 'NOT met'}), "
            f"mean frame {mean / 1024:.1f} KB (goal <= {GOAL_FRAME_BYTES // 1024} KB: "
            f"{'met' if mean <= GOAL_FRAME_BYTES else 'NOT met'})"
        )


def main(args: argparse.Namespace) -> int:
    return run_bench(args.steps)
