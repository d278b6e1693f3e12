"""In-process wake-up of the action router when a command becomes ready.

The router polls the database every ~200 ms (that is how commands made on another
replica, or by the CLI, are noticed). A command that becomes ready in *this* process
(console click) wakes this process's routers at once, so it skips the poll delay.

Keyed by engine (each ``SekimoriServer`` has its own), weakly, so tests that build
many servers in one process do not wake each other or leak.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import sqlalchemy as sa

__all__ = ["notify_ready", "register_waker", "unregister_waker"]

_lock = threading.Lock()
_wakers: weakref.WeakKeyDictionary[sa.Engine, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def register_waker(engine: sa.Engine, wake: Callable[[], None]) -> None:
    """``wake`` is called (from any thread) when a command becomes ready; it must be
    thread-safe and quick (e.g. ``loop.call_soon_threadsafe(event.set)``)."""
    with _lock:
        _wakers.setdefault(engine, []).append(wake)


def unregister_waker(engine: sa.Engine, wake: Callable[[], None]) -> None:
    with _lock:
        found = _wakers.get(engine, [])
        if wake in found:
            found.remove(wake)


def notify_ready(engine: sa.Engine) -> None:
    with _lock:
        wakers = list(_wakers.get(engine, []))
    for wake in wakers:
        wake()
