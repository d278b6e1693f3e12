"""The fixed table of collectors the agent knows. Each lives in its own module."""

from __future__ import annotations

from typing import Final

from sekimori.agent.collectors.base import Collector
from sekimori.agent.collectors.files import FileCollector
from sekimori.agent.collectors.inventory import InventoryCollector
from sekimori.agent.collectors.web import WebCollector

__all__ = ["COLLECTORS"]

COLLECTORS: Final[dict[str, type[Collector]]] = {
    InventoryCollector.name: InventoryCollector,
    WebCollector.name: WebCollector,
    FileCollector.name: FileCollector,
}
