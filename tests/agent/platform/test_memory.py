"""The malloc arena cap, in a fresh process (it must come before threads start)."""

from __future__ import annotations

import subprocess
import sys


def test_the_arena_cap_is_accepted_by_glibc() -> None:
    script = (
        "from sekimori.agent.platform.linux.memory import limit_malloc_arenas\n"
        "print(limit_malloc_arenas(2))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"
