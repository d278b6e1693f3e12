"""``sekimori bench live``: live-view frame latency and frame rate.

Everything real, on one machine: a server process, an enrolled ``sekimori agent run``
process on an Xvfb desktop (1920x1080, openbox, a terminal redrawing all the time),
its group's policy allowing live view, and a console user logged in with the login
form whose session cookie opens the console's live-view WebSocket, as the browser
page does. For ``--seconds`` the client reads every picture and measures

* latency: from the moment the agent grabbed the screen (``capture_us`` in each
  picture's header, the agent's clock — the same clock here) to the moment the
  client has the whole picture: capture + encode on the PC, agent -> server over TLS,
  server -> viewer over the console WebSocket;
* the frame rate achieved (the console asks for 4 a second) and the picture sizes.

Goals (issue 6): at least 2 frames a second and under a second of latency on a LAN
(here loopback: the network's own delay comes on top).

Exit status 0 when the run completed (whether or not the goals were met), 1 when it
failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from websockets.sync.client import connect

from sekimori.bench._console_client import ConsoleSession
from sekimori.bench._desktop import missing_programs, running_desktop
from sekimori.bench._server import (
    BenchmarkFailed,
    clean_environment,
    log_tail,
    running_server,
    stop_process,
)
from sekimori.clock import now_us
from sekimori.protocol.policy import LiveViewPolicy, Policy
from sekimori.server.console.routes.live import FRAME_HEADER, LIVE_FPS, LIVE_SCALE
from sekimori.server.store.policies import save_policy
from sekimori.server.store.users import create_user

__all__ = ["GOAL_FPS", "GOAL_P95_MS", "main"]

GOAL_FPS = 2.0
GOAL_P95_MS = 1000.0
_SCREEN = "1920x1080x24"
_USER = "bench-live"
_PASSWORD = "bench live password 1"  # noqa: S105 - a throwaway account of this run
_TIMEOUT = 30.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _wait(doing: str, ready: Callable[[], bool], timeout: float = _TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"timed out after {timeout:.0f} s {doing}")
        time.sleep(0.1)


def _run(workdir: Path, seconds: float) -> tuple[list[float], list[int], float, int]:
    with (
        running_desktop(workdir / "desktop", _SCREEN) as desktop,
        running_server(workdir) as server,
    ):
        # Something that changes on the screen all the time.
        desktop.spawn(["xterm", "-geometry", "160x50", "-e", "top", "-d", "0.2"])
        create_user(server.engine, _USER, _PASSWORD, "administrator")
        state_dir = workdir / "agent"
        (device_id,) = server.enroll_agents([state_dir])
        env = clean_environment()
        env.update(DISPLAY=desktop.display, XAUTHORITY=str(desktop.xauthority))
        log = workdir / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "sekimori", "agent", "run", "--state-dir", str(state_dir)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            server.wait_until("waiting for the agent", lambda r: r.get("agents_connected", 0) >= 1)
            with server.engine.begin() as conn:
                group = conn.execute(sa.text("SELECT id FROM groups WHERE name = 'default'"))
                group_id = int(group.scalar_one())
            version = save_policy(
                server.engine,
                group_id,
                Policy(live_view=LiveViewPolicy(mode="allowed")),
                "bench",
                now_us=now_us(),
            )

            def applied() -> bool:
                with server.engine.connect() as conn:
                    row = conn.execute(
                        sa.text("SELECT version FROM device_policy WHERE device_id = :d"),
                        {"d": device_id},
                    ).scalar()
                return row == version

            _wait("waiting for the agent to apply the live-view policy", applied)
            console = ConsoleSession(server.console_port)
            console.login(_USER, _PASSWORD)
            cookie = console._cookies["sekimori_session"]
            console.close()
            host = f"127.0.0.1:{server.console_port}"
            print(f"watching the PC for {seconds:g} s ...", flush=True)
            latencies: list[float] = []
            sizes: list[int] = []
            with connect(
                f"ws://{host}/devices/{device_id}/live/ws",
                additional_headers={
                    "Cookie": f"sekimori_session={cookie}",
                    "Origin": f"http://{host}",
                },
                max_size=8 * 1024 * 1024,
                open_timeout=_TIMEOUT,
            ) as ws:
                first: float | None = None
                while first is None or time.monotonic() - first < seconds:
                    message = ws.recv(timeout=_TIMEOUT)
                    if isinstance(message, str):
                        state = json.loads(message)
                        if state["state"] in ("refused", "stopped", "unavailable"):
                            raise BenchmarkFailed(f"the live view ended: {state}")
                        continue
                    received = now_us()
                    capture_us = FRAME_HEADER.unpack_from(message)[0]
                    if first is None:
                        first = time.monotonic()
                    latencies.append((received - capture_us) / 1000)
                    sizes.append(len(message) - FRAME_HEADER.size)
                elapsed = time.monotonic() - first
            if agent.poll() is not None:
                raise BenchmarkFailed(f"the agent exited; its log ends:\n{log_tail(log)}")
        finally:
            status = stop_process(agent)
        if status != 0:
            raise BenchmarkFailed(f"the agent exited with status {status}:\n{log_tail(log)}")
    return latencies, sizes, elapsed, len(latencies)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(args: argparse.Namespace) -> int:
    seconds: float = args.seconds
    if seconds <= 0:
        print("sekimori bench live: --seconds must be positive", file=sys.stderr)
        return 2
    missing = [p for p in missing_programs() if p != "chromium"]
    if missing:
        print(f"sekimori bench live: needs {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp:
            latencies, sizes, elapsed, frames = _run(Path(tmp), seconds)
    except BenchmarkFailed as exc:
        print(f"sekimori bench live: failed: {exc}", file=sys.stderr)
        return 1
    if frames < 2:
        print("sekimori bench live: fewer than two pictures arrived", file=sys.stderr)
        return 1
    fps = (frames - 1) / elapsed if elapsed > 0 else 0.0
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    print(
        f"\nsekimori bench live: {frames} pictures over {elapsed:.1f} s of a {_SCREEN[:-3]} "
        f"desktop (asked: {LIVE_FPS:g}/s at scale {LIVE_SCALE:g}, JPEG)\n"
        f"  frame rate:  {fps:.2f} /s   goal >= {GOAL_FPS:g}: {_verdict(fps >= GOAL_FPS)}\n"
        f"  latency (capture on the PC -> picture at the viewer): p50 {p50:.0f} ms, "
        f"p95 {p95:.0f} ms, max {max(latencies):.0f} ms   goal p95 < {GOAL_P95_MS:g} ms: "
        f"{_verdict(p95 < GOAL_P95_MS)}\n"
        f"  picture size: mean {statistics.mean(sizes) / 1024:.0f} KiB, "
        f"max {max(sizes) / 1024:.0f} KiB",
        flush=True,
    )
    return 0
