"""The fixed table of collectors the agent knows. Each lives in its own module."""

from __future__ import annotations

from typing import Final

from sekimori.agent.collectors.base import Collector
from sekimori.agent.collectors.devices import DeviceCollector
from sekimori.agent.collectors.files import FileCollector
from sekimori.agent.collectors.inventory import InventoryCollector
from sekimori.agent.collectors.network import NetworkCollector
from sekimori.agent.collectors.printing import PrintingCollector
from sekimori.agent.collectors.processes import ProcessCollector
from sekimori.agent.collectors.sessions import SessionCollector
from sekimori.agent.collectors.web import WebCollector
from sekimori.agent.collectors.window import WindowCollector

__all__ = ["COLLECTORS"]

COLLECTORS: Final[dict[str, type[Collector]]] = {
    InventoryCollector.name: InventoryCollector,
    ProcessCollector.name: ProcessCollector,
    NetworkCollector.name: NetworkCollector,
    WebCollector.name: WebCollector,
    FileCollector.name: FileCollector,
    WindowCollector.name: WindowCollector,
    DeviceCollector.name: DeviceCollector,
    SessionCollector.name: SessionCollector,
    PrintingCollector.name: PrintingCollector,
}
