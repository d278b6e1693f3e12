"""Logging: the JSON formatter for log shippers, and configure_logging."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.logs import JsonFormatter, configure_logging
from sekimori.settings import LogSettings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    others = {name: logging.getLogger(name).level for name in ("websockets", "alembic")}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, other_level in others.items():
        logging.getLogger(name).setLevel(other_level)


def _logger_to(stream: io.StringIO, name: str) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    out = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict)
        out.append(entry)
    return out


def _record(message: str, *args: object, name: str = "sekimori.test") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, None)


def test_one_json_object_per_line_with_the_standard_fields() -> None:
    stream = io.StringIO()
    logger = _logger_to(stream, "sekimori.test.fields")
    before = dt.datetime.now(dt.UTC)
    logger.info("device %s connected from %s", "dev-1", "10.0.0.5")
    logger.error("second")
    after = dt.datetime.now(dt.UTC)
    first, second = _lines(stream)
    assert first["message"] == "device dev-1 connected from 10.0.0.5"
    assert first["level"] == "info"
    assert first["logger"] == "sekimori.test.fields"
    assert isinstance(first["pid"], int)
    assert second["level"] == "error"
    assert second["message"] == "second"
    assert isinstance(first["time"], str)
    stamp = dt.datetime.fromisoformat(first["time"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= stamp <= after


def test_multi_line_message_stays_on_one_line() -> None:
    stream = io.StringIO()
    _logger_to(stream, "sekimori.test.multiline").warning("line one\nline two\r\n\ttab")
    (entry,) = _lines(stream)
    assert entry["message"] == "line one\nline two\r\n\ttab"


def test_exception_is_included_on_the_same_line() -> None:
    stream = io.StringIO()
    logger = _logger_to(stream, "sekimori.test.exc")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    (entry,) = _lines(stream)
    assert entry["message"] == "failed"
    assert isinstance(entry["exception"], str)
    assert "Traceback" in entry["exception"]
    assert "RuntimeError: boom" in entry["exception"]


def test_no_exception_key_without_an_exception() -> None:
    entry = json.loads(JsonFormatter().format(_record("plain")))
    assert set(entry) == {"time", "level", "logger", "message", "pid"}


def test_undecodable_file_names_do_not_break_the_log_line() -> None:
    # On POSIX a file name that is not UTF-8 arrives as lone surrogates (surrogateescape).
    name = b"report-\xff.txt".decode("utf-8", "surrogateescape")
    line = JsonFormatter().format(_record("cannot read %s", name))
    entry = json.loads(line)
    assert "\n" not in line
    assert isinstance(entry["message"], str)
    assert entry["message"].startswith("cannot read report-")
    entry["message"].encode("utf-8")  # valid text for a log shipper


# Lone surrogates (category Cs) are drawn on purpose: they are what surrogateescape makes.
any_text = st.lists(
    st.text(max_size=10) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    max_size=8,
).map("".join)


@given(any_text, st.text(min_size=1, max_size=30))
def test_any_message_gives_one_valid_json_line(message: str, name: str) -> None:
    line = JsonFormatter().format(_record("%s", message, name=name))
    assert "\n" not in line
    assert "\r" not in line
    entry = json.loads(line)
    assert isinstance(entry["message"], str)
    entry["message"].encode("utf-8")
    if not any("\ud800" <= ch <= "\udfff" for ch in message):
        assert entry["message"] == message
    if not any("\ud800" <= ch <= "\udfff" for ch in name):
        assert entry["logger"] == name


def test_configure_logging_json_writes_json_to_stderr(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="INFO", format="json"), component="agent")
    logging.getLogger("sekimori.test.configured").info("hello %d", 42)
    logging.getLogger("sekimori.test.configured").debug("hidden at INFO")
    logging.getLogger("websockets.server").info("handshake noise")
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    entry = json.loads(line)
    assert entry["message"] == "hello 42"
    assert entry["level"] == "info"
    assert entry["logger"] == "sekimori.test.configured"


def test_configure_logging_text_names_the_component(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="DEBUG", format="text"), component="server")
    logging.getLogger("sekimori.test.text").debug("visible at DEBUG")
    (line,) = capsys.readouterr().err.splitlines()
    assert " server sekimori.test.text: visible at DEBUG" in line
    assert "DEBUG" in line


def test_configure_logging_replaces_handlers(restore_logging: None) -> None:
    configure_logging(LogSettings(), component="a")
    configure_logging(LogSettings(format="json"), component="b")
    root = logging.getLogger()
    assert len(root.handlers) == 1
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    assert isinstance(handler.formatter, JsonFormatter)
    assert handler.stream is sys.stderr
