"""Structured logging: human text, or one JSON object per line for log shippers."""

from __future__ import annotations

import datetime as dt
import logging
import sys

import msgspec

from sekimori.settings import LogSettings

__all__ = ["JsonFormatter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return msgspec.json.encode(entry).decode("utf-8")
        except UnicodeEncodeError:
            # A file name that is not valid UTF-8 reaches us as lone surrogates
            # (surrogateescape); JSON must be UTF-8, so escape them rather than lose the line.
            clean = {k: _utf8(v) if isinstance(v, str) else v for k, v in entry.items()}
            return msgspec.json.encode(clean).decode("utf-8")


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def configure_logging(settings: LogSettings, *, component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # The WebSocket library logs every handshake failure at INFO with a traceback.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
