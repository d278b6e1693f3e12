"""The kernel's process-events connector: exec and exit (and fork) as they happen.

A NETLINK_CONNECTOR socket subscribed to CN_IDX_PROC receives one message per
exec and per exit, so a process living a few milliseconds is still examined while it
runs, and an exit is timed exactly. With ``forks=True`` it also reports each new
process (not thread) that a fork creates, so a caller can find a process that never
execs without listing /proc. The subscriber must be in the initial user and
pid namespaces (and, before Linux 6.6, hold CAP_NET_ADMIN); from inside a container
the kernel ignores the subscription without a word, so ``ProcConnector`` waits for
the kernel's acknowledgement and raises ``ConnectorUnavailable`` when none comes or
it refuses (the caller then polls /proc instead).

Kernels since 6.6 filter events per socket (a ``proc_input`` subscription): we ask
for exec and exit (and fork) only. Older kernels ignore that message and keep sending
all events. Either way a classic BPF filter on the socket drops, in the kernel, what
we would drop anyway: the exit and fork of every thread (most exits on a desktop:
each browser tab's threads), and uid/sid/comm/... events, so the collector is not
woken for them. Where the filter cannot be attached, they are parsed and dropped.

Message layout (include/uapi/linux/netlink.h, connector.h, cn_proc.h), native
byte order: nlmsghdr (16 bytes), cn_msg (20 bytes), proc_event: what, cpu,
timestamp_ns (CLOCK_MONOTONIC), then the event's own fields.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from sekimori.clock import now_us

__all__ = ["ConnectorUnavailable", "ProcConnector", "ProcEvent"]

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
_NLMSG_DONE = 3
_PROC_CN_MCAST_LISTEN = 1
_PROC_EVENT_NONE = 0x00000000
_PROC_EVENT_FORK = 0x00000001
_PROC_EVENT_EXEC = 0x00000002
_PROC_EVENT_EXIT = 0x80000000
_SO_RCVBUFFORCE = 33
_SO_ATTACH_FILTER = 26

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_PID_TGID = struct.Struct("=II")
_ERR = struct.Struct("=I")
_HEADERS = _NLMSGHDR.size + _CN_MSG.size


# Offsets in a message: proc_event.what, then the pid and tgid of an exec or exit
# (process_pid, process_tgid) and of a fork's child (child_pid, child_tgid).
_WHAT = _HEADERS
_EVENT_DATA = _HEADERS + _EVENT_HEAD.size
_FORK_CHILD = _EVENT_DATA + 8


def _socket_filter(*, execs: bool, exits: bool, forks: bool) -> bytes:
    """Classic BPF: keep acks, and the chosen events of whole processes (not threads)."""
    # Opcodes (linux/filter.h): ld word abs, st M[0], ldx M[0], jeq k, jeq x, ret k.
    ld, st, ldx, jeq_k, jeq_x, ret = 0x20, 0x02, 0x61, 0x15, 0x1D, 0x06
    # BPF loads words in network byte order; the fields are in native order.
    order = struct.Struct(">I")

    def k(value: int) -> int:
        return int(order.unpack(struct.pack("=I", value))[0])

    keep, drop = 0xFFFFFFFF, 0
    program = [
        (ld, 0, 0, _WHAT),  # 0: A = what
        (jeq_k, 5 if exits else 4, 0, k(_PROC_EVENT_EXIT)),  # 1: exit -> 7 (or 6)
        (jeq_k, 8 if forks else 3, 0, k(_PROC_EVENT_FORK)),  # 2: fork -> 11 (or 6)
        (jeq_k, 1 if execs else 2, 0, k(_PROC_EVENT_EXEC)),  # 3: exec -> 5 (or 6)
        (jeq_k, 0, 1, k(_PROC_EVENT_NONE)),  # 4: the kernel's ack -> 5, else 6
        (ret, 0, 0, keep),  # 5
        (ret, 0, 0, drop),  # 6
        (ld, 0, 0, _EVENT_DATA),  # 7: exit: A = pid
        (st, 0, 0, 0),  # 8: M[0] = A
        (ld, 0, 0, _EVENT_DATA + 4),  # 9: A = tgid
        (jeq_k, 3, 3, 0),  # 10: -> 14 (the comparison)
        (ld, 0, 0, _FORK_CHILD),  # 11: fork: A = child pid
        (st, 0, 0, 0),  # 12: M[0] = A
        (ld, 0, 0, _FORK_CHILD + 4),  # 13: A = child tgid
        (ldx, 0, 0, 0),  # 14: X = M[0]
        (jeq_x, 0, 1, 0),  # 15: pid == tgid (a process, not a thread) -> 16, else 17
        (ret, 0, 0, keep),  # 16
        (ret, 0, 0, drop),  # 17
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


class ConnectorUnavailable(Exception):
    """The process-events connector cannot be used here; the message says why."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    kind: Literal["fork", "exec", "exit"]
    pid: int
    """The process (thread-group) id; a fork's child. Threads are not reported."""
    time_us: int
    """When the kernel saw it, in microseconds since the epoch."""


class ProcConnector:
    """A subscribed process-events socket. Raises ConnectorUnavailable on creation.

    ``forks``: report forks of new processes too. ``deferred``: forks and exits wait
    for the next ``read`` that returns (an exec, or the timeout) instead of waking it:
    they arrive on a second socket that ``read`` drains without waiting on it, merged
    in the kernel's order. Their times are the kernel's, so only the delivery is late;
    a collector that needs an exec at once (to read a short-lived process while it
    runs) is then woken once per process instead of three times.
    """

    def __init__(
        self,
        *,
        ack_timeout: float = 1.0,
        receive_buffer: int = 1 << 20,
        forks: bool = False,
        deferred: bool = False,
    ) -> None:
        self._forks = forks
        self._buffered: list[ProcEvent] = []
        self._late: socket.socket | None = None
        self._sock = self._subscribe(
            ack_timeout,
            receive_buffer,
            execs=True,
            exits=not deferred,
            forks=forks and not deferred,
        )
        if deferred:
            try:
                self._late = self._subscribe(
                    ack_timeout, receive_buffer * 2, execs=False, exits=True, forks=forks
                )
            except BaseException:
                self._sock.close()
                raise
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)

    def _subscribe(
        self, ack_timeout: float, receive_buffer: int, *, execs: bool, exits: bool, forks: bool
    ) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise ConnectorUnavailable(f"cannot open a connector socket: {exc}") from None
        try:
            self._setup(sock, ack_timeout, receive_buffer)
            wanted = (
                (_PROC_EVENT_EXEC if execs else 0)
                | (_PROC_EVENT_EXIT if exits else 0)
                | (_PROC_EVENT_FORK if forks else 0)
            )
            self._send(sock, 0, struct.pack("=II", _PROC_CN_MCAST_LISTEN, wanted))
            self._attach_filter(sock, _socket_filter(execs=execs, exits=exits, forks=forks))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _setup(self, sock: socket.socket, ack_timeout: float, receive_buffer: int) -> None:
        # A burst of exits (a build finishing) must not overflow the socket: ask for a
        # large buffer, beyond rmem_max when we are allowed to (root).
        for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
                break
            except OSError:
                continue
        try:
            sock.bind((0, CN_IDX_PROC))
        except OSError as exc:
            raise ConnectorUnavailable(f"cannot join the process-events group: {exc}") from None
        # The classic subscription (all events) is acknowledged by the kernel, which
        # proves we are permitted. Only then narrow it to exec and exit: the kernel
        # does not acknowledge a filtered subscription (its ack is itself filtered),
        # and a kernel older than 6.6 ignores it and keeps sending everything.
        # The kernel multicasts its answer (ack + 1) to every subscriber, so the number
        # must be ours alone, or another agent's subscription would pass for ours (even
        # from inside a container): our netlink port id is unique.
        ack = sock.getsockname()[0] & 0x7FFFFFFF
        self._send(sock, ack, struct.pack("=I", _PROC_CN_MCAST_LISTEN))
        if not self._await_ack(sock, ack, time.monotonic() + ack_timeout):
            raise ConnectorUnavailable(
                "the kernel did not acknowledge the process-events subscription "
                "(not in the initial namespaces, or no connector support)"
            )

    @staticmethod
    def _attach_filter(sock: socket.socket, code: bytes) -> None:
        """Drop unwanted events in the kernel (see the module docstring); best effort."""
        buffer = ctypes.create_string_buffer(code, len(code))
        # struct sock_fprog: unsigned short len, (padding), struct sock_filter *filter.
        fprog = struct.pack("HP", len(code) // 8, ctypes.addressof(buffer))
        # Without socket filters in this kernel, _parse drops those events instead.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)

    @staticmethod
    def _send(sock: socket.socket, ack: int, body: bytes) -> None:
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, ack, len(body), 0) + body
        port = sock.getsockname()[0]
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), _NLMSG_DONE, 0, 0, port)
        try:
            sock.send(header + cn)
        except OSError as exc:
            raise ConnectorUnavailable(f"cannot subscribe to process events: {exc}") from None

    def _await_ack(self, sock: socket.socket, ack: int, deadline: float) -> bool:
        """Wait for the kernel's answer (what=NONE, ack+1); raise if it refuses."""
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return False
            except OSError as exc:
                raise ConnectorUnavailable(f"cannot read process events: {exc}") from None
            for msg_ack, what, payload, event in self._parse(data, self._clock()):
                if what == _PROC_EVENT_NONE and msg_ack == ack + 1:
                    (err,) = _ERR.unpack_from(payload)
                    if err:
                        raise ConnectorUnavailable(
                            f"process-events subscription refused: {os.strerror(err)}"
                        )
                    return True
                if event is not None:
                    # Events before the ack prove the subscription works; keep them.
                    self._buffered.append(event)
        return False

    def read(self, timeout: float) -> tuple[list[ProcEvent], bool]:
        """Wait up to ``timeout`` seconds; return (events, overrun).

        ``overrun`` means the kernel dropped messages because we were too slow: the
        caller must reconcile by listing /proc.
        """
        events, self._buffered = self._buffered, []
        # Rounded up: a wait under 1 ms must not become poll(0), a busy spin.
        ready = bool(events) or bool(self._poll.poll(max(0, math.ceil(timeout * 1000))))
        if not ready and self._late is None:
            return events, False
        clock = self._clock()
        overrun = self._drain(self._sock, events, clock) if ready else False
        if self._late is not None:
            late: list[ProcEvent] = []
            overrun = self._drain(self._late, late, clock) or overrun
            if late:
                # One clock for both: the kernel's order is the order of the times.
                events = sorted(events + late, key=lambda event: event.time_us)
        return events, overrun

    def _drain(self, sock: socket.socket, into: list[ProcEvent], clock: tuple[int, int]) -> bool:
        """Append what ``sock`` holds; returns whether the kernel dropped messages."""
        overrun = False
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return overrun
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped messages
                    overrun = True
                    continue
                raise
            into.extend(event for _, _, _, event in self._parse(data, clock) if event is not None)

    @staticmethod
    def _clock() -> tuple[int, int]:
        """(monotonic ns, wall µs) now: converts the kernel's event times."""
        return time.monotonic_ns(), now_us()

    def _parse(
        self, data: bytes, clock: tuple[int, int]
    ) -> list[tuple[int, int, bytes, ProcEvent | None]]:
        """(cn ack, what, event fields, ProcEvent or None) for each message in ``data``."""
        out: list[tuple[int, int, bytes, ProcEvent | None]] = []
        forks = self._forks
        offset = 0
        mono_now, wall_now = clock
        while offset + _HEADERS + _EVENT_HEAD.size <= len(data):
            length = _NLMSGHDR.unpack_from(data, offset)[0]
            if length < _HEADERS:
                break
            idx, val, _, ack, _, _ = _CN_MSG.unpack_from(data, offset + _NLMSGHDR.size)
            start = offset + _HEADERS
            offset += (length + 3) & ~3
            if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
                continue
            what, _, stamp_ns = _EVENT_HEAD.unpack_from(data, start)
            fields = data[start + _EVENT_HEAD.size : start + length - _HEADERS]
            event = None
            kind: Literal["fork", "exec", "exit"] | None = None
            if what in (_PROC_EVENT_EXEC, _PROC_EVENT_EXIT) and len(fields) >= 8:
                pid, tgid = _PID_TGID.unpack_from(fields)
                # Only a thread-group leader's exit ends the process; after exec the
                # caller is always the leader.
                if what == _PROC_EVENT_EXEC or pid == tgid:
                    kind = "exec" if what == _PROC_EVENT_EXEC else "exit"
            elif what == _PROC_EVENT_FORK and forks and len(fields) >= 16:
                pid, tgid = _PID_TGID.unpack_from(fields, 8)
                if pid == tgid:  # a new process, not a new thread
                    kind = "fork"
            if kind is not None:
                event = ProcEvent(kind, tgid, wall_now - max(0, mono_now - stamp_ns) // 1000)
            out.append((ack, what, fields, event))
        return out

    def close(self) -> None:
        self._sock.close()
        if self._late is not None:
            self._late.close()

    def __enter__(self) -> ProcConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
