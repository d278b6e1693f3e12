"""The printing collector: print jobs from CUPS's page_log.

Every ``interval_seconds`` it reads what was appended to the page log since the
cursor (the file's inode and the offset reached, saved with the events), so each
line is reported once, across restarts and log rotations. On the first run the
existing log is reported from its start (its lines carry their own times).

Where CUPS is not installed (no cupsd, no CUPS log directory) the collector stops
as unavailable: retrying cannot help.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux import cups
from sekimori.protocol.events.printing import PrintJob, PrintPage

__all__ = ["PrintingCollector", "PrintingSettings"]

log = logging.getLogger(__name__)


class PrintingSettings(CollectorSettings):
    interval_seconds: float = 5.0
    page_log_path: str = "/var/log/cups/page_log"
    # As PageLogFormat in cupsd.conf, when the administrator changed it.
    page_log_format: str = cups.DEFAULT_PAGE_LOG_FORMAT
    cupsd_path: str = "/usr/sbin/cupsd"


class _Cursor(msgspec.Struct):
    inode: int
    offset: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Cursor)


def _event(entry: cups.PageLogEntry) -> PendingEvent | None:
    attrs = entry.attributes
    common = {
        "printer": entry.printer,
        "user": entry.user,
        "job_id": entry.job_id,
        "document": attrs.get("job-name", ""),
        "host": attrs.get("job-originating-host-name", ""),
        "billing": attrs.get("job-billing", ""),
        "media": attrs.get("media", ""),
        "sides": attrs.get("sides", ""),
    }
    payload: PrintJob | PrintPage
    if entry.page == "total":
        payload = msgspec.convert({**common, "pages": entry.copies}, PrintJob)
        kind = "printing.job"
    elif entry.page.isdigit() and len(entry.page) <= 9:
        payload = msgspec.convert(
            {**common, "page": int(entry.page), "copies": entry.copies}, PrintPage
        )
        kind = "printing.page"
    else:
        return None
    return PendingEvent(kind, payload, os_user=entry.user or None, time_us=entry.time_us)


class PrintingCollector(Collector):
    name: ClassVar[str] = "printing"
    settings_type: ClassVar[type[CollectorSettings]] = PrintingSettings
    settings: PrintingSettings

    def run(self, stop: threading.Event) -> None:
        conf = self.settings
        log_dir = os.path.dirname(conf.page_log_path)
        if not os.path.exists(conf.cupsd_path) and not os.path.isdir(log_dir):
            raise CollectorError(
                f"CUPS not installed (no {conf.cupsd_path}, no {log_dir})", permanent=True
            )
        fmt = cups.PageLogFormat(conf.page_log_format)
        raw = self.sink.cursor()
        cursor = _Cursor(inode=0, offset=0)
        if raw is not None:
            try:
                cursor = _decoder.decode(raw)
            except msgspec.DecodeError:
                log.warning("printing collector cursor unreadable; reading the log afresh")
        while True:
            try:
                lines, inode, offset = cups.read_new(
                    conf.page_log_path, cursor.inode, cursor.offset
                )
            except OSError as exc:
                raise CollectorError(f"cannot read {conf.page_log_path}: {exc}") from exc
            if (inode, offset) != (cursor.inode, cursor.offset):
                events: list[PendingEvent] = []
                for line in lines:
                    entry = fmt.parse(line)
                    event = _event(entry) if entry is not None else None
                    if event is None:
                        log.warning("page_log line not in the expected format: %r", line[:200])
                        continue
                    events.append(event)
                cursor = _Cursor(inode=inode, offset=offset)
                self.sink.emit_many(events, cursor=_encoder.encode(cursor))
            if stop.wait(conf.interval_seconds):
                return
