"""Events of the network collector.

``network.connections`` is a periodic summary of the PC's outbound connections, one
entry per (process, protocol, remote address, remote port). An entry that was already
present in the previous period is not repeated (unless the agent is configured to), so
each summary lists what is new; ``first_seen_us`` says since when the agent has seen it.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "Connection", "NetworkConnections"]


class Connection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Outbound sockets of one process to one remote endpoint during the period."""

    pid: int
    """0 when no process could be found for the socket (it ended, or is not visible)."""
    exe: str
    user: str
    """The OS user owning the socket."""
    protocol: Literal["tcp", "udp"]
    remote_address: str
    remote_port: int
    local_ports: list[int]
    """Distinct local ports seen (at most a few; ``count`` is the full number)."""
    count: int
    """Distinct sockets to this endpoint the agent saw during the period."""
    first_seen_us: int
    last_seen_us: int


class NetworkConnections(Payload):
    period_start_us: int
    period_end_us: int
    connections: list[Connection]
    omitted: int = 0
    """Entries left out because the summary reached the agent's size limit."""


KINDS: Final[dict[str, type[Payload]]] = {
    "network.connections": NetworkConnections,
}
