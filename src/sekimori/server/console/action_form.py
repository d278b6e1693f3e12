"""The console's "New action" form: which fields each action type has, and turning a
submitted form into typed ``ActionParams`` (msgspec, the wire format's own
constraints) with an error per field.

Fields shared by several actions have one name (``user`` for lock and logoff,
``delay_seconds`` and ``notice`` for restart and shutdown). Scripts and packages are
picked from the library by SHA-256; their name, file name and interpreter come from
the library, not from the form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from sekimori.protocol.actions import (
    LOW_RISK,
    ActionParams,
    CollectFileParams,
    InstallPackageParams,
    KillProcessParams,
    LockParams,
    LogoffParams,
    MessageParams,
    RefreshInventoryParams,
    RemoteControlParams,
    RemovePackageParams,
    RestartParams,
    RunScriptParams,
    ScreenshotParams,
    ShutdownParams,
)
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.store.actions import LibraryRow

__all__ = [
    "ACTION_LABELS",
    "FIELD_LABELS",
    "LIFETIMES",
    "ParsedForm",
    "describe_params",
    "parse_params",
    "risk_free",
]

ACTION_LABELS: Final[dict[str, str]] = {
    "message": N_("Show a message"),
    "screenshot": N_("Take a screenshot now"),
    "refresh_inventory": N_("Refresh inventory"),
    "lock": N_("Lock the screen"),
    "logoff": N_("Log a user off"),
    "restart": N_("Restart"),
    "shutdown": N_("Shut down"),
    "kill_process": N_("Kill a process"),
    "collect_file": N_("Collect a file"),
    "run_script": N_("Run a script"),
    "install_package": N_("Install a package"),
    "remove_package": N_("Remove a package"),
    "remote_control": N_("Remote control"),
}

# Labels of the parameters as they appear in the signed command (confirmation page).
FIELD_LABELS: Final[dict[str, str]] = {
    "text": N_("Text"),
    "title": N_("Title"),
    "monitor": N_("Monitor (0 = all)"),
    "user": N_("User"),
    "delay_seconds": N_("Delay (seconds)"),
    "message": N_("Message to users"),
    "pid": N_("Process id"),
    "name": N_("Name"),
    "start_time_us": N_("Process start time (µs)"),
    "signal": N_("Signal"),
    "path": N_("Path"),
    "max_bytes": N_("Maximum size (bytes)"),
    "sha256": N_("SHA-256"),
    "interpreter": N_("Interpreter"),
    "args": N_("Arguments"),
    "timeout_seconds": N_("Time limit (seconds)"),
    "run_as": N_("Run as user"),
    "filename": N_("File name"),
    "purge": N_("Purge configuration"),
    "max_seconds": N_("Longest session (seconds)"),
}

# Lifetimes offered (seconds): how long the command may wait for signatures and
# delivery. Capped by the keyring's max_command_seconds (the service refuses more).
LIFETIMES: Final[tuple[tuple[int, str], ...]] = (
    (300, N_("5 minutes")),
    (600, N_("10 minutes")),
    (1800, N_("30 minutes")),
    (3600, N_("1 hour")),
)

_PATH = re.compile(r"\$\.(\w+)")


@dataclass
class ParsedForm:
    params: ActionParams | None = None
    # form field → message
    errors: dict[str, str] = field(default_factory=dict)


def _text(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _opt_int(form: Mapping[str, str], name: str, into: dict[str, Any], key: str = "") -> None:
    raw = _text(form, name)
    if raw:
        into[key or name] = raw  # msgspec converts (and range-checks) numeric strings


def _message(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    return {"text": form.get("text", "").strip(), "title": _text(form, "title")}


def _screenshot(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt_int(form, "monitor", out)
    return out


def _nothing(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    return {}


def _user(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    return {"user": _text(form, "user")}


def _power(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    out: dict[str, Any] = {"message": form.get("notice", "").strip()}
    _opt_int(form, "delay_seconds", out)
    return out


def _kill(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": _text(form, "pid"), "name": _text(form, "process_name")}
    _opt_int(form, "start_time_us", out)
    if _text(form, "signal"):
        out["signal"] = _text(form, "signal")
    return out


def _collect(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    out: dict[str, Any] = {"path": _text(form, "path")}
    _opt_int(form, "max_bytes", out)
    return out


class _LibraryMissing(ValueError):
    pass


def _script(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    item = library.get(_text(form, "script"))
    if item is None or item.kind != "script":
        raise _LibraryMissing("script")
    out: dict[str, Any] = {
        "name": item.name,
        "sha256": item.sha256,
        "interpreter": item.interpreter or "sh",
        "args": [a for a in form.get("args", "").splitlines() if a.strip()],
        "run_as": _text(form, "run_as"),
    }
    _opt_int(form, "timeout_seconds", out)
    return out


def _install(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    item = library.get(_text(form, "package"))
    if item is None or item.kind != "package":
        raise _LibraryMissing("package")
    return {"name": item.name, "filename": item.filename, "sha256": item.sha256}


def _remove(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    return {"name": _text(form, "package_name"), "purge": form.get("purge") == "on"}


def _remote(form: Mapping[str, str], library: Mapping[str, LibraryRow]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt_int(form, "max_seconds", out)
    return out


_Builder = Callable[[Mapping[str, str], Mapping[str, LibraryRow]], dict[str, Any]]
_TYPES: Final[dict[str, tuple[type[Any], _Builder]]] = {
    "message": (MessageParams, _message),
    "screenshot": (ScreenshotParams, _screenshot),
    "refresh_inventory": (RefreshInventoryParams, _nothing),
    "lock": (LockParams, _user),
    "logoff": (LogoffParams, _user),
    "restart": (RestartParams, _power),
    "shutdown": (ShutdownParams, _power),
    "kill_process": (KillProcessParams, _kill),
    "collect_file": (CollectFileParams, _collect),
    "run_script": (RunScriptParams, _script),
    "install_package": (InstallPackageParams, _install),
    "remove_package": (RemovePackageParams, _remove),
    "remote_control": (RemoteControlParams, _remote),
}
# Parameter (in the command) → the form field that holds it, where they differ.
_FORM_FIELD: Final[dict[tuple[str, str], str]] = {
    ("kill_process", "name"): "process_name",
    ("restart", "message"): "notice",
    ("shutdown", "message"): "notice",
    ("remove_package", "name"): "package_name",
    ("run_script", "name"): "script",
    ("run_script", "sha256"): "script",
    ("install_package", "name"): "package",
    ("install_package", "sha256"): "package",
    ("install_package", "filename"): "package",
}


def parse_params(
    action: str, form: Mapping[str, str], library: Mapping[str, LibraryRow]
) -> ParsedForm:
    """Typed parameters for ``action`` from the form, or the errors per form field."""
    if action not in _TYPES:
        return ParsedForm(errors={"action": gettext("Choose an action.")})
    cls, build = _TYPES[action]
    try:
        raw = build(form, library)
    except _LibraryMissing as missing:
        return ParsedForm(errors={str(missing): gettext("Choose an item from the library.")})
    try:
        params: ActionParams = msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _PATH.search(text.rsplit(" - at ", 1)[-1])
        param = found.group(1) if found else ""
        where = _FORM_FIELD.get((action, param), param) or "action"
        return ParsedForm(errors={where: text.split(" - at ", 1)[0]})
    return ParsedForm(params=params)


def describe_params(params: ActionParams) -> list[tuple[str, str]]:
    """(label, value) of each parameter, in words, for the confirmation page."""
    out: list[tuple[str, str]] = []
    for name in params.__struct_fields__:
        value = getattr(params, name)
        if isinstance(value, list):
            shown = " ".join(value) if value else "—"
        elif isinstance(value, bool):
            shown = gettext("yes") if value else gettext("no")
        else:
            shown = str(value) if value not in ("", None) else "—"
        out.append((gettext(FIELD_LABELS.get(name, name)), shown))
    return out


def risk_free(action: str) -> bool:
    return action in LOW_RISK
