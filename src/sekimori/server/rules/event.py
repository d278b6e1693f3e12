"""The event as the rules see it: the envelope fields and the payload as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EvalEvent"]


@dataclass(frozen=True, slots=True)
class EvalEvent:
    """One stored event. ``payload`` is the payload as stored (JSON decoded, or
    ``msgspec.to_builtins`` of the validated struct): array-like structs are lists.
    ``group`` is the device's group name (None when it has none)."""

    device_id: str
    group: str | None
    kind: str
    time_us: int
    os_user: str | None
    payload: Mapping[str, Any]
