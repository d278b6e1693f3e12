"""Which function runs each action: ``"module:function"``, imported on first use.

Every action name has an entry (a test keeps it so). Importing lazily keeps the
agent's start-up light (the X and package code load only when an action needs them)
and lets a handler module be missing on a build that does not ship it: the executor
then answers ``failed`` "not available on this agent".
"""

from __future__ import annotations

import importlib
from typing import Final, cast

from sekimori.agent.actions.base import Handler
from sekimori.protocol.actions import ActionName

__all__ = ["HANDLERS", "load_handler"]

_PACKAGE = "sekimori.agent.actions"

HANDLERS: Final[dict[ActionName, str]] = {
    "message": "desktop:show_message",
    "screenshot": "hooks:screenshot",
    "refresh_inventory": "hooks:refresh_inventory",
    "lock": "desktop:lock_screen",
    "logoff": "desktop:logoff",
    "restart": "power:restart",
    "shutdown": "power:shutdown",
    "kill_process": "processes:kill_process",
    "collect_file": "files:collect_file",
    "run_script": "scripts:run_script",
    "install_package": "packages:install_package",
    "remove_package": "packages:remove_package",
    "remote_control": "remote:remote_control",
}


def load_handler(action: str, table: dict[ActionName, str] | None = None) -> Handler | None:
    """The handler of ``action``, or None when its module or function is missing."""
    target = (table or HANDLERS).get(action)  # type: ignore[call-overload]
    if target is None:
        return None
    module_name, _, function = str(target).partition(":")
    try:
        module = importlib.import_module(f"{_PACKAGE}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(f"{_PACKAGE}.{module_name}"):
            return None
        raise
    handler = getattr(module, function, None)
    return cast("Handler", handler) if callable(handler) else None
