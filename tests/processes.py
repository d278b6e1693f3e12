"""Real server and agent processes for end-to-end tests.

Nothing here is mocked: each ServerProcess is ``python -m sekimori server`` on its own
data directory, free loopback ports and database; each AgentProcess is
``python -m sekimori agent run`` on its own state directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.enroll import enroll
from sekimori.agent.identity import Identity
from sekimori.server.pki import PKI
from sekimori.server.store.engine import create_store_engine
from sekimori.server.store.tokens import create_token

__all__ = ["AgentProcess", "ServerProcess", "free_port", "wait_for"]


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on now, never the same one twice in this run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll until ``condition()``; returns the seconds it took. Fails with ``what``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class _Child:
    """A sekimori child process with its log file: stop (SIGTERM), kill, read the log."""

    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ServerProcess(_Child):
    def __init__(self, data_dir: Path, database_url: str, **overrides: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.agent_port = free_port()
        self.console_port = free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.overrides = overrides
        self._engine: sa.Engine | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}
        env.update(
            SEKIMORI_DATA_DIR=str(self.data_dir),
            SEKIMORI_SERVER__DATABASE_URL=self.database_url,
            SEKIMORI_SERVER__AGENT_HOST="127.0.0.1",
            SEKIMORI_SERVER__AGENT_PORT=str(self.agent_port),
            SEKIMORI_SERVER__CONSOLE_PORT=str(self.console_port),
            SEKIMORI_SERVER__HEARTBEAT_SECONDS="1",
            SEKIMORI_SERVER__REVOCATION_POLL_SECONDS="0.2",
        )
        env.update({f"SEKIMORI_SERVER__{k.upper()}": v for k, v in self.overrides.items()})
        return env

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.agent_port}"

    def start(self, pinned_ports: bool = False) -> ServerProcess:
        for _attempt in range(3):
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sekimori", "server"], env=self.env, stdout=log, stderr=log
            )
            log.close()
            try:
                wait_for(self.healthy, 30, f"server health (log: {self.log_path})", 0.1)
                return self
            except AssertionError:
                # Another program on this machine may take a free port between our
                # probe and the server's bind: choose new ports and try again.
                if pinned_ports or "address already in use" not in self.log():
                    raise
                self.agent_port, self.console_port = free_port(), free_port()
        raise AssertionError(f"server did not start: {self.log()}")

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.console_port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.console_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_store_engine(self.database_url)
        return self._engine

    def dispose(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self._engine is not None:
            self._engine.dispose()

    @property
    def fingerprint(self) -> str:
        return PKI(self.data_dir / "pki").ca_fingerprint()

    def token(self, group: str = "default", ttl: float = 600) -> str:
        return create_token(self.engine(), group=group, ttl_seconds=ttl, created_by="test").token

    def enroll(self, state_dir: Path, group: str = "default") -> Identity:
        return enroll(state_dir, self.url, self.token(group), self.fingerprint)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sekimori", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def scalar(self, sql: str, **params: object) -> int:
        with self.engine().connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())


class AgentProcess(_Child):
    """``sekimori agent run``. Collectors are off unless listed in ``collectors``: the
    channel tests count exactly the events they inject, and each collector is tested on
    its own (and end to end in test_collectors_e2e)."""

    def __init__(
        self,
        state_dir: Path,
        env: dict[str, str] | None = None,
        collectors: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"{state_dir.name}-agent.log"
        self.env = env or {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}
        for name in COLLECTORS:
            if name not in collectors:
                self.env.setdefault(f"SEKIMORI_AGENT__COLLECTORS__{name.upper()}__ENABLED", "false")
        self.env.setdefault("SEKIMORI_AGENT__BACKOFF_INITIAL_SECONDS", "0.2")
        self.env.setdefault("SEKIMORI_AGENT__BACKOFF_MAX_SECONDS", "1")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sekimori", "agent", "run", "--state-dir", str(self.state_dir)],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
