"""Boot identity and time, and time spent suspended.

* /proc/sys/kernel/random/boot_id is a random UUID the kernel makes at each boot: a
  new value means the PC was restarted (or powered off and on).
* /proc/stat's ``btime`` is the boot time in seconds since the epoch.
* CLOCK_BOOTTIME counts suspended time, CLOCK_MONOTONIC does not: their difference is
  the total time suspended since boot, and it grows by exactly the length of each
  suspend.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["boot_id", "boot_time_us", "clocks"]


def boot_id(path: str | Path = "/proc/sys/kernel/random/boot_id") -> str:
    """This boot's id. Raises OSError if it cannot be read."""
    return Path(path).read_text(encoding="ascii").strip()


def boot_time_us(path: str | Path = "/proc/stat") -> int:
    """When this boot began, in microseconds since the epoch. Raises OSError if
    /proc/stat cannot be read, ValueError if it has no btime line."""
    for line in Path(path).read_text(encoding="ascii").splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) * 1_000_000
    raise ValueError(f"no btime in {path}")


def clocks() -> tuple[int, int]:
    """(CLOCK_BOOTTIME, CLOCK_MONOTONIC) in nanoseconds.

    MONOTONIC is read first, so the difference is never below the time suspended.
    """
    monotonic = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME), monotonic
