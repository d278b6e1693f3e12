"""The collector registry: a fixed table that imports a collector only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sekimori.agent.collectors.base import Collector
from sekimori.agent.collectors.registry import COLLECTORS, CollectorTable

# Run in a fresh interpreter: this test process has imported every collector already.
_DISABLED_ALL_BUT_SESSIONS = """
import sys, tempfile, pathlib
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.agent.runtime import collector_settings
from sekimori.settings import AgentSettings

with tempfile.TemporaryDirectory() as tmp:
    off = {name: {"enabled": "false"} for name in COLLECTORS if name != "sessions"}
    settings = AgentSettings(state_dir=tmp, collectors=off)
    outbox = Outbox(pathlib.Path(tmp) / "o.db", max_bytes=1 << 20)
    supervisor = Supervisor(outbox, COLLECTORS, collector_settings(settings))
    outbox.close()
print(supervisor.enabled, COLLECTORS.loaded())
heavy = [m for m in ("Xlib", "watchdog", "sekimori.agent.collectors.window",
                     "sekimori.agent.collectors.files", "sekimori.agent.collectors.inventory")
         if m in sys.modules]
print(heavy)
"""


def test_only_enabled_collectors_are_imported() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _DISABLED_ALL_BUT_SESSIONS],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert out == ["['sessions'] ['sessions']", "[]"]


def test_the_table_maps_each_name_to_its_collector() -> None:
    assert len(COLLECTORS) == 10
    assert "window" in COLLECTORS and "nope" not in COLLECTORS
    for name in COLLECTORS:
        cls = COLLECTORS[name]
        assert issubclass(cls, Collector)
        assert cls.name == name
    assert dict(COLLECTORS.items()) == {name: COLLECTORS[name] for name in COLLECTORS}
    with pytest.raises(KeyError):
        COLLECTORS["nope"]


def test_a_wrong_location_is_refused() -> None:
    table = CollectorTable({"files": "sekimori.agent.collectors.window:WindowCollector"})
    with pytest.raises(TypeError, match="not the collector 'files'"):
        table["files"]
