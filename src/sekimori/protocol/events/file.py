"""Events of the file collector: operations on files under the watched paths.

``owner`` is the file's owner (stat uid → user name) where the file could be read;
the event's os_user is that owner too (inotify does not say which process acted).
``removable`` is true when the path lies on a removable medium (a USB stick, a
card, anything mounted under /media or /run/media).
"""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = [
    "KINDS",
    "FileCopiedToRemovable",
    "FileCreated",
    "FileDeleted",
    "FileModified",
    "FileMoved",
]


class FileCreated(Payload):
    """A file or directory appeared. ``size`` is read once writing settled."""

    path: str
    directory: bool = False
    size: int | None = None
    owner: str | None = None
    removable: bool = False


class FileModified(Payload):
    """A file was written. Repeated writes within the coalescing window are one event;
    ``writes`` counts the notifications it stands for."""

    path: str
    size: int | None = None
    owner: str | None = None
    removable: bool = False
    writes: int = 1


class FileDeleted(Payload):
    path: str
    directory: bool = False
    removable: bool = False


class FileMoved(Payload):
    """A rename or move inside the watched paths (to the trash, say)."""

    src: str
    dest: str
    directory: bool = False
    size: int | None = None
    owner: str | None = None
    removable: bool = False


class FileCopiedToRemovable(Payload):
    """Data was written to a removable medium: the data-leak signal.

    Sent in addition to the file.created / file.modified event of the same write.
    ``mount_point`` and ``device`` name the medium (device is empty when the medium
    was configured by path rather than found in the mount table).
    """

    path: str
    operation: Literal["created", "modified"]
    size: int | None = None
    owner: str | None = None
    mount_point: str = ""
    device: str = ""


KINDS: Final[dict[str, type[Payload]]] = {
    "file.created": FileCreated,
    "file.modified": FileModified,
    "file.deleted": FileDeleted,
    "file.moved": FileMoved,
    "file.copied_to_removable": FileCopiedToRemovable,
}
