"""Keep the public surface honest: every name a module exports in ``__all__`` exists.

Modelled on httpx's tests/test_exported_members.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

import sekimori

# Importing these runs something: the CLI entry point, and Alembic's migration scripts
# (which need an Alembic context).
SKIP = ("sekimori.__main__", "sekimori.server.store.migrations")


def _module_names() -> list[str]:
    # Walk the files rather than pkgutil.walk_packages, which silently skips
    # directories without an __init__.py (implicit namespace packages).
    names = set()
    for root in map(Path, sekimori.__path__):
        for path in root.rglob("*.py"):
            parts = ("sekimori", *path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            if not name.startswith(SKIP):
                names.add(name)
    return sorted(names)


MODULES = _module_names()
WITH_ALL = [name for name in MODULES if hasattr(importlib.import_module(name), "__all__")]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_the_core_modules_are_checked() -> None:
    for name in (
        "sekimori.protocol",
        "sekimori.protocol.codec",
        "sekimori.protocol.events",
        "sekimori.protocol.messages",
        "sekimori.protocol.errors",
        "sekimori.settings",
        "sekimori.agent.outbox",
        "sekimori.agent.backoff",
        "sekimori.agent.identity",
        "sekimori.server.pki",
    ):
        assert name in WITH_ALL


@pytest.mark.parametrize("name", WITH_ALL)
def test_every_exported_name_exists(name: str) -> None:
    module = _module(name)
    exported = module.__all__
    assert isinstance(exported, list | tuple)
    assert len(set(exported)) == len(exported), "duplicates in __all__"
    missing = [member for member in exported if not hasattr(module, member)]
    assert missing == []
    assert [m for m in exported if m.startswith("_") and m != "__version__"] == []


def test_protocol_package_reexports_the_same_objects() -> None:
    from sekimori import protocol

    for member in protocol.__all__:
        value = getattr(protocol, member)
        home = getattr(value, "__module__", None)
        if home is not None and home.startswith("sekimori.protocol."):
            assert getattr(importlib.import_module(home), member) is value
    # Everything public in the submodules that agent and server use is exported here.
    for sub in ("errors", "codec"):
        module = _module(f"sekimori.protocol.{sub}")
        assert set(module.__all__) <= set(protocol.__all__)


@pytest.mark.parametrize("name", ["sekimori.protocol", "sekimori.settings"])
def test_exported_classes_and_functions_belong_to_sekimori(name: str) -> None:
    module = _module(name)
    for member in module.__all__:
        value = getattr(module, member)
        if isinstance(value, type) or callable(value):
            assert value.__module__.startswith("sekimori."), member
