"""Running a real collector in a thread for a test."""

from __future__ import annotations

import threading

from sekimori.agent.collectors.base import Collector

__all__ = ["RunningCollector"]


class RunningCollector:
    """The collector's run() in a thread; stop() joins and re-raises its failure."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.collector.run(self.stop_event)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by stop()
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "collector did not stop"
        if self.error is not None:
            raise self.error
