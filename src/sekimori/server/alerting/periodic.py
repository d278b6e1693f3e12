"""Running a blocking job every so often, off the event loop, until the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["every"]

log = logging.getLogger(__name__)


async def every(
    stop: asyncio.Event,
    seconds: float,
    job: Callable[[], object],
    name: str,
    *,
    first_delay: float = 0.0,
) -> None:
    """Run ``job`` in a worker thread after ``first_delay`` seconds, then every
    ``seconds``, until ``stop`` is set. A failing run is logged with its trace and the
    next one happens on time: one bad run (the store briefly down, a bad row) must not
    end the job for good."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), first_delay)
    while not stop.is_set():
        try:
            await asyncio.to_thread(job)
        except Exception:
            log.exception("%s: run failed", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
