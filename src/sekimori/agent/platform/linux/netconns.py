"""Outbound sockets on Linux and the processes that own them.

The socket table comes from the kernel's sock_diag netlink interface (what ``ss``
uses), with /proc/net/{tcp,tcp6,udp,udp6} as the fallback. Why: on this test machine
reading /proc/net/tcp and tcp6 costs ~20 ms of kernel time per sample (the kernel walks
its whole established-connection hash table again on every 4 KiB read), sock_diag
~0.8 ms. Why not psutil: ``psutil.net_connections`` parses those /proc files and then
maps every socket to its process by reading every fd of every process on each call;
it would also be the agent's only reason to import psutil (several MB of RSS).

``SocketOwners`` finds the process of a socket inode only for inodes it has not
mapped before, visiting first the processes that owned sockets last time and stopping
as soon as every wanted inode is found.

Outbound means: a TCP socket that is connected or connecting (ESTABLISHED, SYN_SENT,
or closing but still owned) whose local address and port are not ones this PC
listens on, and a UDP socket connected to a remote address. TIME_WAIT sockets belong
to no process any more and are skipped. Only the agent's own network namespace is
visible.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["SocketOwners", "SocketRow", "read_outbound"]

PROC = "/proc"

_ESTABLISHED = 0x01
_TCP_LISTEN = 0x0A
# TCP states (include/net/tcp_states.h) of a socket still owned by a process:
# ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING.
_TCP_OWNED = frozenset({0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0B})

# The wildcard addresses a listening socket may be bound to (compared, never bound).
_ANY = ("0.0.0.0", "::")  # noqa: S104

# sock_diag (include/uapi/linux/sock_diag.h, inet_diag.h, netlink.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x001 | 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states; then a zeroed inet_diag_sockid.
_DIAG_REQ = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, sport, dport (big-endian), src, dst
# (16 bytes each), if, cookie[2], expires, rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=BBxx2H16s16s4x8x4x4x4xII")

Protocol = Literal["tcp", "udp"]
# (protocol, state, local address, local port, remote address, remote port, uid, inode)
_Row = tuple[Protocol, int, str, int, str, int, int, int]


@dataclass(frozen=True, slots=True)
class SocketRow:
    protocol: Protocol
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    uid: int
    inode: int


def _text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _diag_table(include_udp: bool) -> list[_Row]:
    tcp_states = sum(1 << state for state in (*_TCP_OWNED, _TCP_LISTEN))
    queries: list[tuple[Protocol, int, int]] = [("tcp", socket.IPPROTO_TCP, tcp_states)]
    if include_udp:
        queries.append(("udp", socket.IPPROTO_UDP, 1 << _ESTABLISHED))
    rows: list[_Row] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        for name, protocol, states in queries:
            for family in (socket.AF_INET, socket.AF_INET6):
                request = _DIAG_REQ.pack(family, protocol, 0, states)
                sock.send(
                    _NLMSGHDR.pack(
                        _NLMSGHDR.size + len(request),
                        _SOCK_DIAG_BY_FAMILY,
                        _NLM_F_REQUEST_DUMP,
                        1,
                        0,
                    )
                    + request
                )
                rows.extend(_diag_replies(sock, name))
    return rows


def _diag_replies(sock: socket.socket, protocol: Protocol) -> Iterable[_Row]:
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR or length < _NLMSGHDR.size:
                raise OSError("sock_diag refused the dump request")
            family, state, sport, dport, src, dst, uid, inode = _DIAG_MSG.unpack_from(
                data, offset + _NLMSGHDR.size
            )
            size = 4 if family == socket.AF_INET else 16
            yield (
                protocol,
                state,
                _text(ipaddress.ip_address(src[:size])),
                socket.ntohs(sport),
                _text(ipaddress.ip_address(dst[:size])),
                socket.ntohs(dport),
                uid,
                inode,
            )
            offset += (length + 3) & ~3


def _proc_endpoint(text: str) -> tuple[str, int]:
    """The kernel prints addresses as 32-bit words in host (little-endian) order."""
    address, _, port = text.partition(":")
    raw = bytes.fromhex(address)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return _text(ipaddress.ip_address(swapped)), int(port, 16)


def _proc_table(include_udp: bool) -> list[_Row]:
    tables: list[tuple[Protocol, str]] = [("tcp", "tcp"), ("tcp", "tcp6")]
    if include_udp:
        tables += [("udp", "udp"), ("udp", "udp6")]
    rows: list[_Row] = []
    for protocol, name in tables:
        try:
            with open(f"{PROC}/net/{name}", encoding="ascii") as table:
                next(table, None)  # the header line
                for line in table:
                    # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
                    fields = line.split()
                    local, remote = _proc_endpoint(fields[1]), _proc_endpoint(fields[2])
                    state, uid, inode = int(fields[3], 16), int(fields[7]), int(fields[9])
                    rows.append((protocol, state, *local, *remote, uid, inode))
        except FileNotFoundError:
            continue  # IPv6 disabled in this kernel
    return rows


def read_outbound(
    *, include_udp: bool = True, source: Literal["auto", "sock_diag", "proc"] = "auto"
) -> list[SocketRow]:
    """The outbound sockets of this PC's network namespace (see the module doc).

    ``source`` forces one way of reading the table (for tests); "auto" uses sock_diag
    and falls back to /proc/net when the kernel refuses it.
    """
    if source == "proc":
        table = _proc_table(include_udp)
    else:
        try:
            table = _diag_table(include_udp)
        except OSError:
            if source == "sock_diag":
                raise
            table = _proc_table(include_udp)
    listening = {(row[2], row[3]) for row in table if row[0] == "tcp" and row[1] == _TCP_LISTEN}
    out: list[SocketRow] = []
    for (
        protocol,
        state,
        local_address,
        local_port,
        remote_address,
        remote_port,
        uid,
        inode,
    ) in table:
        if not inode or remote_port == 0:
            continue
        if protocol == "tcp":
            if state not in _TCP_OWNED:
                continue
            # A connection on an address and port we listen on was accepted: inbound.
            bound = [(local_address, local_port)] + [(any_, local_port) for any_ in _ANY]
            if not listening.isdisjoint(bound):
                continue
        elif state != _ESTABLISHED:
            continue
        out.append(
            SocketRow(protocol, local_address, local_port, remote_address, remote_port, uid, inode)
        )
    return out


class SocketOwners:
    """Which process holds a socket inode, remembered between calls.

    A socket shared by several processes (inherited across fork) is attributed to
    the first one found.
    """

    def __init__(self) -> None:
        self._owner: dict[int, int] = {}
        self.processes_scanned = 0
        """How many processes' fd tables were read in total (a cost counter)."""

    def find(self, inodes: Iterable[int]) -> dict[int, int]:
        """Map each inode to its process id; inodes with no process found are absent.

        An inode no process was found for (its owner ended, or is one we may not
        inspect) is remembered as such, so it does not cost a full scan every call.
        """
        wanted = set(inodes)
        known = {inode: self._owner[inode] for inode in wanted if inode in self._owner}
        # Forget sockets that no longer exist, so the map stays as small as the table.
        self._owner = dict(known)
        missing = wanted - known.keys()
        if missing:
            recent = list(dict.fromkeys(pid for pid in known.values() if pid))
            for pid in [*recent, *self._all_pids(exclude=set(recent))]:
                for inode in self._sockets_of(pid) & missing:
                    self._owner[inode] = known[inode] = pid
                    missing.discard(inode)
                if not missing:
                    break
            for inode in missing:
                self._owner[inode] = 0
        return {inode: pid for inode, pid in known.items() if pid}

    @staticmethod
    def _all_pids(exclude: set[int]) -> list[int]:
        with os.scandir(PROC) as entries:
            pids = [int(e.name) for e in entries if e.name.isdigit()]
        return [pid for pid in pids if pid not in exclude]

    def _sockets_of(self, pid: int) -> set[int]:
        self.processes_scanned += 1
        inodes: set[int] = set()
        try:
            with os.scandir(f"{PROC}/{pid}/fd") as fds:
                for fd in fds:
                    try:
                        target = os.readlink(fd.path)
                    except OSError:
                        continue  # closed meanwhile
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
        except OSError:
            pass  # the process ended, or is not ours to inspect
        return inodes
