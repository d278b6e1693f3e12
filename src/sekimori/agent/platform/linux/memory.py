"""The C heap of the agent process.

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
memory freed in one arena is not reused by threads of another. The agent runs a
dozen threads that each allocate a little (collectors, the channel, watchdog's): one
arena per thread kept ~1 MiB more resident in the workload bench than two shared
arenas (40.2 against 39.2 MiB). The threads mostly wait, so they hardly contend for
the arena locks.
"""

from __future__ import annotations

import ctypes

__all__ = ["limit_malloc_arenas"]

_M_ARENA_MAX = -8  # malloc.h


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (call before threads start); False where the C
    library is not glibc or refuses."""
    try:
        # The symbols already loaded (libc's among them): no library search, which
        # would run ldconfig.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
