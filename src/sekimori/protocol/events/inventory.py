"""Events of the inventory collector."""

from __future__ import annotations

from typing import Final

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS"]

KINDS: Final[dict[str, type[Payload]]] = {}
