"""The command an administrator runs on a PC to enroll it: shown by ``sekimori token
create`` and by the console's enrollment page, so both say exactly the same."""

from __future__ import annotations

import shlex
import socket

from sekimori.settings import ServerSettings

__all__ = ["agent_url", "enroll_command"]


def agent_url(server: ServerSettings, override: str = "") -> str:
    """The URL agents dial: ``override``, else ``public_agent_url``, else
    ``wss://<this host's FQDN>:<agent_port>``."""
    return override or server.public_agent_url or f"wss://{socket.getfqdn()}:{server.agent_port}"


def enroll_command(
    url: str, token: str, ca_fingerprint: str, operators_fingerprint: str | None = None
) -> str:
    """``sekimori agent enroll ...`` with the CA pinned by its SHA-256 fingerprint and,
    when the deployment has an operator keyring, that keyring pinned by its fingerprint
    (``--operators``; without it the PC trusts no operator signature)."""
    command = (
        f"sekimori agent enroll --server {shlex.quote(url)} --token {shlex.quote(token)} "
        f"--ca-fingerprint SHA256:{ca_fingerprint}"
    )
    if operators_fingerprint:
        command += f" --operators SHA256:{operators_fingerprint}"
    return command
