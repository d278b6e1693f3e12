"""Local user accounts: who has a home folder on this PC, and uid → name.

"Local" means listed in /etc/passwd, not every account NSS could return (a directory
service may list thousands of users who never logged on here). Human accounts are
those with a uid in [UID_MIN, UID_MAX] from /etc/login.defs (1000..60000 by default)
and a login shell.
"""

from __future__ import annotations

import functools
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalUser", "local_users", "user_name"]

_NO_LOGIN_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})


@dataclass(frozen=True, slots=True)
class LocalUser:
    name: str
    uid: int
    home: str


def _uid_range(login_defs: Path) -> tuple[int, int]:
    low, high = 1000, 60000
    try:
        text = login_defs.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return low, high
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            if parts[0] == "UID_MIN":
                low = int(parts[1])
            elif parts[0] == "UID_MAX":
                high = int(parts[1])
    return low, high


def local_users(
    accounts_file: str | Path = "/etc/passwd", login_defs: str | Path = "/etc/login.defs"
) -> list[LocalUser]:
    """Human local accounts whose home folder exists, in /etc/passwd order.

    Raises OSError if ``accounts_file`` cannot be read.
    """
    low, high = _uid_range(Path(login_defs))
    users: list[LocalUser] = []
    for line in Path(accounts_file).read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[2].isdigit():
            continue
        uid = int(fields[2])
        if not low <= uid <= high or fields[6] in _NO_LOGIN_SHELLS:
            continue
        if os.path.isdir(fields[5]):
            users.append(LocalUser(fields[0], uid, fields[5]))
    return users


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The account name of ``uid``, or the number as text when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
