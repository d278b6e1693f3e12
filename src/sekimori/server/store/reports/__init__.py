"""Activity reports: web access, application time, logon hours, copies to removable
media, USB devices — aggregated in SQL over one kind's ``(kind, time_us)`` index
range, top-N limited, within the user's scope.

Local time: days and hours are those of the console's time zone, DST included.
SQLite has no time zones, so the store never asks the database for local time:
* days: the UTC instants of the local midnights in the range are computed here and
  a CASE maps each event time to its day (exact across DST changes);
* hours of the day: events are counted per UTC quarter hour (every zone's offset is
  a whole number of quarter hours) and each quarter is given its local hour here.

Without a device, OS user or text filter, the web and applications reports read the
rollups kept at ingest (``usage_hourly``, store/rollups.py) for the whole hours of
the range and the raw events only for the partial hours at its ends, so their cost
does not grow with the number of events. Hours map to local days and hours exactly
in zones whose offset is a whole number of hours (Asia/Tokyo, Europe/*, US zones). What
the rollups cannot hold (visited URLs, window titles, per-user rows) is shown only
with a device or user filter.

Payload fields are read with ``json_extract`` on SQLite and the JSONB operators on
PostgreSQL (the payload column is TEXT) through ``json_text``/``json_int``.
"""

from __future__ import annotations

from sekimori.server.store.reports._common import day_starts, json_int, json_text, rolls_up
from sekimori.server.store.reports.apps import AppReport, AppTime, apps_report
from sekimori.server.store.reports.logons import LogonDay, logons_report
from sekimori.server.store.reports.media import (
    RemovableCopy,
    RemovableReport,
    RemovableTotal,
    UsbReport,
    UsbSighting,
    removable_report,
    usb_report,
)
from sekimori.server.store.reports.web import Count, WebReport, web_report

__all__ = [
    "AppReport",
    "AppTime",
    "Count",
    "LogonDay",
    "RemovableCopy",
    "RemovableReport",
    "RemovableTotal",
    "UsbReport",
    "UsbSighting",
    "WebReport",
    "apps_report",
    "day_starts",
    "json_int",
    "json_text",
    "logons_report",
    "removable_report",
    "rolls_up",
    "usb_report",
    "web_report",
]
