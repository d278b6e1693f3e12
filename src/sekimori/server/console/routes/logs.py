"""Console: the log search — every event kind, filtered, newest first, paged — and its
CSV and JSON exports. Every search and export is audited with its filters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Iterator
from typing import Any, Final

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.console.activity import criteria, kind_choices
from sekimori.server.console.event_summary import kind_label, summarize
from sekimori.server.console.filters import (
    PAGE_SIZE,
    ActivityFilter,
    FilterError,
    parse_activity_filter,
)
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import groups_in_scope
from sekimori.server.store.event_search import FoundEvent, iter_events, search_events

__all__ = ["EXPORT_LIMIT", "csv_cell", "routes"]

EXPORT_LIMIT: Final = 100_000
CSV_COLUMNS: Final = (
    "time",
    "time_us",
    "device_id",
    "hostname",
    "seq",
    "os_user",
    "kind",
    "tag",
    "subject",
    "payload",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection):
# such cells get a leading apostrophe, which makes them plain text.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _timezone(ctx: PageContext) -> str:
    return ctx.console.settings.server.console_timezone


def _parse(ctx: PageContext, *, paged: bool) -> ActivityFilter:
    return parse_activity_filter(
        dict(ctx.query.items()), timezone=_timezone(ctx), now_us=now_us(), paged=paged
    )


def _form_values(ctx: PageContext) -> dict[str, str]:
    return {
        name: ctx.query.get(name, "")
        for name in ("since", "until", "device", "group", "user", "kind", "q")
    }


@page("activity")
def logs(ctx: PageContext) -> Response:
    partial = ctx.htmx and ctx.request.headers.get("hx-target") == "logs-results"
    common: dict[str, Any] = {
        "kinds": kind_choices(),
        "groups": groups_in_scope(ctx.engine, ctx.scope),
        "values": _form_values(ctx),
        "page_size": PAGE_SIZE,
        "export_limit": EXPORT_LIMIT,
    }
    try:
        activity = _parse(ctx, paged=True)
    except FilterError as error:
        template = "logs_results.html" if partial else "logs.html"
        return ctx.render(template, status=400, error=error.text(), activity=None, **common)
    found = search_events(
        ctx.engine, ctx.scope, criteria(activity), offset=activity.offset, limit=PAGE_SIZE
    )
    ctx.audit(
        "activity.search",
        "logs",
        filters=activity.audit_detail(),
        page=activity.page,
        results=found.total if found.total is not None else len(found.events),
    )
    rows = [
        (event, kind_label(event.kind), summarize(event.kind, event.payload))
        for event in found.events
    ]
    return ctx.render(
        "logs_results.html" if partial else "logs.html",
        error=None,
        activity=activity,
        found=found,
        rows=rows,
        **common,
    )


def _export_refused(ctx: PageContext, error: FilterError) -> Response:
    return Response(error.text() + "\n", status_code=400, media_type="text/plain; charset=utf-8")


def _filename(activity: ActivityFilter, ext: str) -> str:
    stamp = dt.datetime.fromtimestamp(activity.until_us / 1e6, tz=dt.UTC).strftime("%Y%m%d-%H%M")
    return f"sekimori-logs-{stamp}.{ext}"


def _local_iso(zone: zoneinfo.ZoneInfo, us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=zone).isoformat(timespec="seconds")


def _rows(ctx: PageContext, activity: ActivityFilter) -> Iterator[FoundEvent]:
    # One row past the limit tells whether the export was cut.
    return iter_events(ctx.engine, ctx.scope, criteria(activity), limit=EXPORT_LIMIT + 1)


@page("activity")
def export_csv(ctx: PageContext) -> Response:
    try:
        activity = _parse(ctx, paged=False)
    except FilterError as error:
        return _export_refused(ctx, error)
    ctx.audit("activity.export", "logs", format="csv", filters=activity.audit_detail())
    zone = zoneinfo.ZoneInfo(_timezone(ctx))
    rows = _rows(ctx, activity)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        # A byte-order mark so spreadsheet programs read the UTF-8 (Japanese) right.
        buffer.write("\ufeff")
        writer.writerow(CSV_COLUMNS)
        for count, event in enumerate(rows, start=1):
            if count > EXPORT_LIMIT:
                writer.writerow(
                    [f"# more than {EXPORT_LIMIT} events match: export cut; narrow the search"]
                )
                break
            writer.writerow(
                [
                    csv_cell(value)
                    for value in (
                        _local_iso(zone, event.time_us),
                        event.time_us,
                        event.device_id,
                        event.hostname,
                        event.seq,
                        event.os_user,
                        event.kind,
                        event.tag,
                        event.subject,
                        event.payload,
                    )
                ]
            )
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{_filename(activity, "csv")}"'},
    )


@page("activity")
def export_json(ctx: PageContext) -> Response:
    try:
        activity = _parse(ctx, paged=False)
    except FilterError as error:
        return _export_refused(ctx, error)
    ctx.audit("activity.export", "logs", format="json", filters=activity.audit_detail())
    zone = zoneinfo.ZoneInfo(_timezone(ctx))
    rows = _rows(ctx, activity)
    head = json.dumps(
        {"filters": activity.audit_detail(), "limit": EXPORT_LIMIT}, ensure_ascii=False
    )

    def chunks() -> Iterator[str]:
        yield head[:-1] + ', "events": ['
        truncated = False
        out: list[str] = []
        for count, event in enumerate(rows, start=1):
            if count > EXPORT_LIMIT:
                truncated = True
                break
            fields = json.dumps(
                {
                    "time": _local_iso(zone, event.time_us),
                    "time_us": event.time_us,
                    "device_id": event.device_id,
                    "hostname": event.hostname,
                    "seq": event.seq,
                    "os_user": event.os_user,
                    "kind": event.kind,
                    "tag": event.tag,
                    "subject": event.subject,
                },
                ensure_ascii=False,
            )
            # The payload is stored as validated JSON: embedded as it is.
            out.append(
                ("," if count > 1 else "") + fields[:-1] + ', "payload": ' + event.payload + "}"
            )
            if len(out) >= 500:
                yield "\n".join(out)
                out.clear()
        yield "\n".join(out)
        yield '], "truncated": ' + ("true" if truncated else "false") + "}\n"

    return StreamingResponse(
        chunks(),
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{_filename(activity, "json")}"'},
    )


routes: list[BaseRoute] = [
    Route("/logs", logs, methods=["GET"]),
    Route("/logs/export.csv", export_csv, methods=["GET"]),
    Route("/logs/export.json", export_json, methods=["GET"]),
]
