"""``<state_dir>/actions.db``: the nonces of accepted commands, and results not sent yet.

A command's nonce is committed here *before* its action runs, so a crash in the middle
of an action never lets the same command run twice. A nonce is kept until its command
has expired (plus a margin for clock changes): after that, the expiry check refuses
the command anyway.

Results the agent could not send (the connection dropped while the action ran) wait
in ``pending_results`` and are sent on the next connection.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sekimori.clock import now_us

__all__ = ["NONCE_MARGIN_US", "ActionsDB"]

# Kept this long after the command's expiry: a clock set back by less than this does
# not reopen a replay window.
NONCE_MARGIN_US = 24 * 3600 * 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    keep_until_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_keep ON nonces (keep_until_us);
CREATE TABLE IF NOT EXISTS pending_results (
    nonce TEXT PRIMARY KEY,
    message BLOB NOT NULL,
    created_at_us INTEGER NOT NULL
);
"""


class ActionsDB:
    """Thread-safe; every write is committed (WAL, synchronous=FULL) before it returns."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a recorded nonce survives a power cut that follows the action.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_nonce(self, nonce: str, action: str, expires_at_us: int) -> bool:
        """Record ``nonce``; False if it was already recorded (a replay)."""
        now = now_us()
        with self._lock:
            self._db.execute("DELETE FROM nonces WHERE keep_until_us < ?", (now,))
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO nonces (nonce, action, received_at_us, keep_until_us)"
                " VALUES (?, ?, ?, ?)",
                (nonce, action, now, expires_at_us + NONCE_MARGIN_US),
            )
            return cursor.rowcount == 1

    def seen(self, nonce: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone()
        return row is not None

    def keep_result(self, nonce: str, message: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pending_results (nonce, message, created_at_us)"
                " VALUES (?, ?, ?)",
                (nonce, message, now_us()),
            )

    def pending_results(self) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT nonce, message FROM pending_results ORDER BY created_at_us"
            ).fetchall()
        return [(str(n), bytes(m)) for n, m in rows]

    def drop_result(self, nonce: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending_results WHERE nonce = ?", (nonce,))
