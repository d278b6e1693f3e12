"""The script and package library: commands name an item by the SHA-256 of its bytes
(signed inside the command), and the router sends those bytes beside the command; the
agent runs them only if their SHA-256 matches the signed one."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.actions import MAX_ATTACHMENT_BYTES
from sekimori.server.actions.errors import ActionError
from sekimori.server.store import actions as store
from sekimori.server.store.audit import append_audit

__all__ = ["INTERPRETERS", "add_library_item", "library_content", "list_library"]

INTERPRETERS = ("sh", "bash", "python3")
_FILENAME = re.compile(r"^[^/\x00]{1,255}$")


def add_library_item(
    engine: sa.Engine,
    kind: Literal["script", "package"],
    *,
    name: str,
    filename: str,
    content: bytes,
    interpreter: str = "sh",
    by: str,
) -> str:
    """Add a script or package; returns its SHA-256 (the same bytes added twice are
    one item). Raises ``ActionError`` for an empty or too large file (the agent reads
    at most ``MAX_ATTACHMENT_BYTES`` beside a command), a bad name or interpreter.
    Audited (library.add)."""
    if kind not in ("script", "package"):
        raise ActionError("kind must be script or package")
    if not content:
        raise ActionError("the file is empty")
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise ActionError(
            f"{len(content)} bytes: the library holds files of at most {MAX_ATTACHMENT_BYTES}"
        )
    if not 1 <= len(name) <= 200 or any(ord(c) < 32 for c in name):
        raise ActionError("name must be 1-200 printable characters")
    if not _FILENAME.match(filename):
        raise ActionError("filename must be 1-255 characters without '/'")
    if kind == "script" and interpreter not in INTERPRETERS:
        raise ActionError(f"interpreter must be one of {', '.join(INTERPRETERS)}")
    if kind == "package" and not filename.endswith(".deb"):
        raise ActionError("a package must be a .deb file")
    digest = hashlib.sha256(content).hexdigest()
    with engine.begin() as conn:
        added = store.insert_library_item(
            conn,
            store.LibraryRow(
                sha256=digest,
                kind=kind,
                name=name,
                filename=filename,
                interpreter=interpreter if kind == "script" else "",
                size=len(content),
                created_by=by,
                created_at_us=now_us(),
            ),
            content,
        )
        if added:
            append_audit(
                conn,
                actor=by,
                action="library.add",
                target=digest,
                detail={"kind": kind, "name": name, "filename": filename, "size": len(content)},
            )
    return digest


def list_library(engine: sa.Engine, kind: str | None = None) -> list[store.LibraryRow]:
    with engine.connect() as conn:
        return store.library_rows(conn, kind)


def library_content(engine: sa.Engine, sha256: str) -> bytes | None:
    with engine.connect() as conn:
        found = store.library_item(conn, sha256)
    return None if found is None else found[1]
