"""The backend for the OS the agent runs on."""

from __future__ import annotations

import sys

__all__ = ["PLATFORM"]

if sys.platform.startswith("linux"):
    PLATFORM = "linux"
else:  # pragma: no cover - Windows and macOS backends are planned
    PLATFORM = sys.platform
