"""What the agent says about its host when it enrolls and connects."""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostInfo", "host_info"]


@dataclass(frozen=True, slots=True)
class HostInfo:
    hostname: str
    os: str
    os_version: str


def _os_release() -> str:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return platform.platform()
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def host_info() -> HostInfo:
    system = platform.system().lower() or "unknown"
    version = _os_release() if system == "linux" else platform.platform()
    return HostInfo(
        hostname=socket.gethostname()[:255] or "unknown",
        os=system[:64],
        os_version=f"{version} (kernel {platform.release()})"[:255],
    )
