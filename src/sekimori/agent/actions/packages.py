"""``install_package`` / ``remove_package``: Debian packages with dpkg (Linux only).

Install: the signed ``.deb`` (its SHA-256 is in the command) is written to
``<state_dir>/action-files``; its ``Package`` field (and ``Architecture`` when the name
has a ``:arch`` qualifier) must equal the signed name, so a command that says
"install foo" cannot install bar. Then ``dpkg -i`` with ``DEBIAN_FRONTEND=
noninteractive`` and ``--force-confdef --force-confold`` (a changed configuration file
is kept, never asked about) within ``DPKG_TIMEOUT_SECONDS``. dpkg does not fetch
dependencies: a missing one makes it fail, and its message is the reason.

Remove: ``dpkg -r`` (``--purge`` when asked). Refused for a package that is not
installed, an essential, protected or ``Priority: required`` package, and the packages
the agent itself runs from (``AGENT_PACKAGES`` and the owners of its interpreter and
code), so a command cannot cut off the agent or the system.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Final

import sekimori
from sekimori.agent.actions.base import ActionContext, Outcome, cap_output
from sekimori.agent.actions.child_process import MINIMAL_PATH, ChildResult, run_child
from sekimori.agent.actions.files import work_dir
from sekimori.protocol.actions import ActionParams, InstallPackageParams, RemovePackageParams

__all__ = ["AGENT_PACKAGES", "DPKG_TIMEOUT_SECONDS", "install_package", "remove_package"]

DPKG_TIMEOUT_SECONDS: Final = 900
_QUERY_TIMEOUT_SECONDS: Final = 60
AGENT_PACKAGES: Final = frozenset({"sekimori", "sekimori-agent"})
_ENV: Final = {
    "PATH": MINIMAL_PATH,
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


def _unsupported() -> Outcome | None:
    if not sys.platform.startswith("linux") or shutil.which("dpkg", path=MINIMAL_PATH) is None:
        return Outcome(status="failed", reason="not supported on this platform (no dpkg)")
    return None


async def _run(argv: list[str], timeout: float = _QUERY_TIMEOUT_SECONDS) -> ChildResult:
    return await run_child(argv, timeout_seconds=timeout, env=_ENV)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _dpkg_failure(what: str, result: ChildResult) -> Outcome:
    if result.timed_out:
        reason = f"{what} timed out; dpkg was killed (the package may be half-configured)"
    else:
        message = _last_line(result.output)
        reason = f"{what} failed (exit code {result.exit_code})" + (
            f": {message}" if message else ""
        )
    return Outcome(status="failed", reason=reason, exit_code=result.exit_code, output=result.output)


async def _installed_status(name: str) -> str:
    """``Status`` / ``Version`` of an installed package, or "" when dpkg knows none."""
    result = await _run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", name])
    return result.output.strip() if result.exit_code == 0 else ""


async def install_package(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, InstallPackageParams):
        raise TypeError(f"install_package got {type(params).__name__}")
    if (refusal := _unsupported()) is not None:
        return refusal
    if hashlib.sha256(ctx.attachment).hexdigest() != params.sha256:
        return Outcome(
            status="failed", reason="the package's bytes do not match its signed SHA-256"
        )
    name, _, arch = params.name.partition(":")
    fd, path = tempfile.mkstemp(prefix="package-", suffix=".deb", dir=work_dir(ctx.state_dir))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(ctx.attachment)
        fields = await _run(["dpkg-deb", "--field", path, "Package", "Architecture"])
        if fields.exit_code != 0:
            message = _last_line(fields.output)
            return Outcome(
                status="failed", reason=f"{params.filename} is not a Debian package: {message}"
            )
        found = dict(line.split(": ", 1) for line in fields.output.splitlines() if ": " in line)
        if found.get("Package") != name:
            return Outcome(
                status="failed",
                reason=f"{params.filename} is package {found.get('Package', '?')!r}, "
                f"not {name!r} as signed",
            )
        if arch and found.get("Architecture") != arch:
            return Outcome(
                status="failed",
                reason=f"{params.filename} is for architecture "
                f"{found.get('Architecture', '?')!r}, not {arch!r} as signed",
            )
        result = await _run(
            ["dpkg", "--force-confdef", "--force-confold", "-i", path], DPKG_TIMEOUT_SECONDS
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if result.timed_out or result.exit_code != 0:
        return _dpkg_failure(f"dpkg -i {params.filename}", result)
    status = await _installed_status(params.name)
    summary = f"\n{params.name}: {status}" if status else ""
    return Outcome(status="done", exit_code=0, output=cap_output(result.output + summary))


async def _owner_packages(paths: list[str]) -> set[str]:
    """Packages owning any of ``paths`` (``dpkg-query -S``); none for unowned paths."""
    result = await _run(["dpkg-query", "-S", *paths])
    owners: set[str] = set()
    for line in result.output.splitlines():
        head, sep, _ = line.partition(": ")
        if sep and not head.startswith("dpkg-query"):
            owners.update(p.strip().partition(":")[0] for p in head.split(","))
    return owners


async def _agent_packages() -> set[str]:
    paths = [os.path.realpath(sys.executable), str(Path(sekimori.__file__).resolve())]
    return set(AGENT_PACKAGES) | await _owner_packages(paths)


async def remove_package(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, RemovePackageParams):
        raise TypeError(f"remove_package got {type(params).__name__}")
    if (refusal := _unsupported()) is not None:
        return refusal
    name = params.name.partition(":")[0]
    query = await _run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Priority}\t${Essential}\t${Protected}\n",
            params.name,
        ]
    )
    rows = [line.split("\t") for line in query.output.splitlines() if line.count("\t") == 3]
    if query.exit_code != 0 or not rows:
        return Outcome(status="failed", reason=f"package {params.name} is not known to dpkg")
    status, priority, essential, protected = rows[0]
    # "ii", "iU", "rc" ...: the second letter is the current state; "c" = only config
    # files left, "n" = not installed.
    if status[1:2] == "n" or (status[1:2] == "c" and not params.purge):
        return Outcome(status="failed", reason=f"package {params.name} is not installed")
    if essential.strip() == "yes" or protected.strip() == "yes":
        return Outcome(status="failed", reason=f"package {name} is essential; not removed")
    if priority.strip() == "required":
        return Outcome(status="failed", reason=f"package {name} has priority required; not removed")
    if name in await _agent_packages():
        return Outcome(
            status="failed", reason=f"package {name} is what the agent runs on; not removed"
        )
    flag = "--purge" if params.purge else "-r"
    result = await _run(["dpkg", flag, params.name], DPKG_TIMEOUT_SECONDS)
    if result.timed_out or result.exit_code != 0:
        return _dpkg_failure(f"dpkg {flag} {params.name}", result)
    return Outcome(status="done", exit_code=0, output=result.output)
