"""The fixed table of collectors the agent knows. Each lives in its own module.

The table names each collector's class by ``module:Class`` rather than importing it:
a collector's module is imported when it is first looked up, so a disabled collector
costs no memory (python-xlib, watchdog and the dpkg parser together are ~5 MiB of an
agent that should stay under 40 MiB). Iterating the table, ``len`` and ``in`` import
nothing; ``COLLECTORS[name]``, ``.values()`` and ``.items()`` import.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from typing import Final

from sekimori.agent.collectors.base import Collector

__all__ = ["COLLECTORS", "CollectorTable"]


class CollectorTable(Mapping[str, type[Collector]]):
    """A read-only mapping of collector name to class, importing each class lazily."""

    def __init__(self, locations: Mapping[str, str]) -> None:
        self._locations = dict(locations)
        self._loaded: dict[str, type[Collector]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> type[Collector]:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        location = self._locations[name]  # KeyError for an unknown name, as a dict
        module_name, _, class_name = location.partition(":")
        with self._lock:
            cls = getattr(importlib.import_module(module_name), class_name)
            if not (isinstance(cls, type) and issubclass(cls, Collector)) or cls.name != name:
                raise TypeError(f"{location} is not the collector {name!r}")
            self._loaded[name] = cls
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)

    def __contains__(self, name: object) -> bool:
        return name in self._locations

    def loaded(self) -> list[str]:
        """The names whose modules were imported so far (for tests and benches)."""
        return list(self._loaded)


_PACKAGE = "sekimori.agent.collectors"

COLLECTORS: Final = CollectorTable(
    {
        "inventory": f"{_PACKAGE}.inventory:InventoryCollector",
        "processes": f"{_PACKAGE}.processes:ProcessCollector",
        "network": f"{_PACKAGE}.network:NetworkCollector",
        "web": f"{_PACKAGE}.web:WebCollector",
        "files": f"{_PACKAGE}.files:FileCollector",
        "window": f"{_PACKAGE}.window:WindowCollector",
        "devices": f"{_PACKAGE}.devices:DeviceCollector",
        "sessions": f"{_PACKAGE}.sessions:SessionCollector",
        "printing": f"{_PACKAGE}.printing:PrintingCollector",
        "screens": f"{_PACKAGE}.screens:ScreensCollector",
    }
)
