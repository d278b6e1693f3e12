"""``sekimori screens rotate-key``: a new key for the screen frame blob store.

New frames are encrypted with the new key at once (the running server re-reads the
key ring's ``current`` file); old frames keep their key until ``--reencrypt``
rewrites them with the new one and retires the old keys. Audited.
"""

from __future__ import annotations

import argparse

from sekimori.cli.common import CommandError, cli_actor, settings_from_args
from sekimori.server.blobs import BlobCorrupt, KeyRingError, blob_store_for
from sekimori.server.bootstrap import open_store
from sekimori.server.store.audit import append_audit

__all__ = ["screens_rotate_key"]


def screens_rotate_key(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    blobs = blob_store_for(settings.data_path)
    engine = open_store(settings)
    try:
        previous = blobs.keys.current_id()
        try:
            key_id = blobs.keys.rotate()
        except (OSError, KeyRingError) as exc:
            raise CommandError(f"could not create a new blob key: {exc}") from None
        detail: dict[str, object] = {"previous": previous, "key_id": key_id}
        print(f"new blob key {key_id}: new screen frames are encrypted with it")
        error = ""
        if args.reencrypt:
            try:
                rewritten, retired = blobs.reencrypt()
            except BlobCorrupt as exc:
                error = str(exc)
                rewritten, retired = -1, []
            detail.update(reencrypted=rewritten, retired=retired, error=error or None)
            if not error:
                print(
                    f"{rewritten:,} blobs re-encrypted; keys retired: {', '.join(retired) or '-'}"
                )
        append_audit(
            engine, actor=cli_actor(), action="screens.rotate_key", target=key_id, detail=detail
        )
    finally:
        engine.dispose()
    if error:
        raise CommandError(error)
    return 0
