"""``sekimori server`` and ``sekimori init``."""

from __future__ import annotations

import argparse
import asyncio
import signal

from sekimori.cli.common import settings_from_args
from sekimori.server.bootstrap import InitResult, initialize

__all__ = ["init", "run_server"]


def announce(result: InitResult) -> None:
    print(f"CA fingerprint (agents pin this): SHA256:{result.pki.ca_fingerprint()}", flush=True)
    if result.admin_password:
        # Shown once: only its argon2id hash is stored.
        print(
            f"First administrator: admin / {result.admin_password}  (shown only once)", flush=True
        )


def init(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="server")
    result = initialize(settings)
    announce(result)
    result.engine.dispose()
    return 0


def run_server(args: argparse.Namespace) -> int:
    from sekimori.server.app import SekimoriServer

    settings = settings_from_args(args, component="server")
    result = initialize(settings)
    announce(result)
    server = SekimoriServer(settings, result)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.run(stop)

    asyncio.run(main())
    return 0
