"""A real ``sekimori server`` process for a benchmark, and real agent enrollment.

The server runs as its own process (so it gets its own core and its own GIL) with a
temporary data directory, free loopback ports and the default settings: any
``SEKIMORI_*`` variables of the caller's environment are dropped, so a local config
cannot change what is measured.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from sekimori.server.pki import PKI
from sekimori.server.store.engine import create_store_engine
from sekimori.server.store.tokens import create_token

__all__ = [
    "BenchServer",
    "BenchmarkFailed",
    "clean_environment",
    "free_port",
    "log_tail",
    "running_server",
    "stop_process",
]

_START_TIMEOUT = 60.0
_LOG_TAIL_BYTES = 4000


class BenchmarkFailed(Exception):
    """The benchmark could not run or its result failed verification."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    """The caller's environment without any SEKIMORI_* setting (defaults are measured)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it does not stop within ``timeout``; returns its status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def log_tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-_LOG_TAIL_BYTES:].decode("utf-8", "replace")


class BenchServer:
    """A running server process and what a benchmark needs to talk to it."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        data_dir: Path,
        agent_port: int,
        console_port: int,
        database_url: str,
        log_path: Path,
    ) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.agent_port = agent_port
        self.console_port = console_port
        self.database_url = database_url
        self.log_path = log_path
        self._engine: sa.Engine | None = None

    @property
    def agent_url(self) -> str:
        return f"wss://127.0.0.1:{self.agent_port}"

    @property
    def engine(self) -> sa.Engine:
        """An engine on the server's own store (the CLI does the same)."""
        if self._engine is None:
            self._engine = create_store_engine(self.database_url)
        return self._engine

    def healthz(self) -> dict[str, Any] | None:
        """The parsed /healthz reply, or None while the server is not (yet) healthy."""
        conn = http.client.HTTPConnection("127.0.0.1", self.console_port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            body = response.read()
        except OSError:
            return None
        finally:
            conn.close()
        if response.status != 200:
            return None
        reply: dict[str, Any] = json.loads(body)
        return reply

    def check_alive(self, doing: str) -> None:
        if self.proc.poll() is not None:
            raise BenchmarkFailed(
                f"the server exited with status {self.proc.returncode} while {doing}; "
                f"its log ends:\n{log_tail(self.log_path)}"
            )

    def wait_until(self, doing: str, ready: Any, timeout: float = _START_TIMEOUT) -> None:
        """Poll ``ready(healthz_reply)`` until it is true; fail if the server dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(doing)
            reply = self.healthz()
            if reply is not None and ready(reply):
                return
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"timed out after {timeout:.0f} s {doing}")
            time.sleep(0.05)

    def enroll_agents(self, state_dirs: list[Path]) -> list[str]:
        """Enroll one agent per state directory the way a PC does (one-time token,
        pinned CA fingerprint, key made locally); returns the device ids."""
        from sekimori.agent.enroll import EnrollmentError, enroll

        fingerprint = PKI(self.data_dir / "pki").ca_fingerprint()
        device_ids = []
        for state_dir in state_dirs:
            issued = create_token(self.engine, group="default", ttl_seconds=600, created_by="bench")
            try:
                identity = enroll(state_dir, self.agent_url, issued.token, fingerprint)
            except EnrollmentError as exc:
                raise BenchmarkFailed(f"enrollment failed: {exc}") from None
            device_ids.append(identity.device_id)
        return device_ids

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        status = stop_process(self.proc)
        # -SIGTERM would mean the handler was never installed; 0 is a clean shutdown.
        if status != 0:
            raise BenchmarkFailed(
                f"the server exited with status {status} on SIGTERM; "
                f"its log ends:\n{log_tail(self.log_path)}"
            )


@contextlib.contextmanager
def running_server(workdir: Path, database_url: str | None = None) -> Iterator[BenchServer]:
    """Start ``python -m sekimori server`` on free loopback ports, wait for /healthz,
    yield it, and stop it (SIGTERM) afterwards."""
    data_dir = workdir / "server"
    agent_port, console_port = free_port(), free_port()
    env = clean_environment()
    env.update(
        SEKIMORI_DATA_DIR=str(data_dir),
        SEKIMORI_SERVER__AGENT_HOST="127.0.0.1",
        SEKIMORI_SERVER__AGENT_PORT=str(agent_port),
        SEKIMORI_SERVER__CONSOLE_PORT=str(console_port),
        # Every connection logs a line at INFO: noise in a benchmark's log.
        SEKIMORI_LOG__LEVEL="WARNING",
    )
    if database_url:
        env["SEKIMORI_SERVER__DATABASE_URL"] = database_url
    else:
        database_url = f"sqlite:///{(data_dir / 'sekimori.db').resolve()}"
    log_path = workdir / "server.log"
    log: IO[bytes]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sekimori", "server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = BenchServer(
        proc,
        data_dir=data_dir,
        agent_port=agent_port,
        console_port=console_port,
        database_url=database_url,
        log_path=log_path,
    )
    try:
        server.wait_until("starting the server", lambda reply: reply.get("status") == "ok")
        yield server
    except BaseException:
        # Already failing: do not let a second error from stopping hide the first.
        with contextlib.suppress(BenchmarkFailed):
            server.stop()
        raise
    server.stop()
