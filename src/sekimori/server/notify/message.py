"""What a notification says: the typed alert message and its few translated strings.

The strings live in a small dict rather than the console's Babel catalogs: a notification
needs a dozen words in two languages, and the catalogs belong to the console.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from sekimori.clock import format_us
from sekimori.server.notify.errors import NotifyConfigError

__all__ = ["STRINGS", "AlertMessage", "Locale", "Severity", "one_line"]

Locale = Literal["en", "ja"]

# At most this many event lines travel in a notification; the console has the rest.
MAX_SUMMARY_LINES = 10
MAX_LINE_CHARS = 300


class Severity(enum.StrEnum):
    """An alert's severity, lowest first; ``rank`` orders them for routing."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}

STRINGS: dict[Locale, dict[str, str]] = {
    "en": {
        "subject": "[Sekimori] {severity}: {title} on {hostname}",
        "subject_count": "[Sekimori] {severity}: {title} on {hostname} ({count} times)",
        "rule": "Rule",
        "severity": "Severity",
        "device": "Device",
        "group": "Group",
        "first_seen": "First seen",
        "last_seen": "Last seen",
        "count": "Count",
        "events": "Matching events",
        "more_events": "… and {n} more events",
        "suppressed": "{n} more notifications for this rule were held back by the rate limit.",
        "open": "Open in the console",
        "info": "Info",
        "low": "Low",
        "medium": "Medium",
        "high": "High",
        "critical": "Critical",
    },
    "ja": {
        "subject": "[Sekimori] {severity}: {hostname} で {title}",
        "subject_count": "[Sekimori] {severity}: {hostname} で {title}（{count} 回）",
        "rule": "ルール",
        "severity": "重要度",
        "device": "端末",
        "group": "グループ",
        "first_seen": "初回検知",
        "last_seen": "最終検知",
        "count": "回数",
        "events": "該当イベント",
        "more_events": "…ほか {n} 件のイベント",
        "suppressed": "このルールの通知がほかに {n} 件、送信数の上限により保留されました。",
        "open": "コンソールで開く",
        "info": "情報",
        "low": "低",
        "medium": "中",
        "high": "高",
        "critical": "緊急",
    },
}

# Control characters (CR and LF above all), and the Unicode line/paragraph separators:
# hostnames, titles and event text come from managed PCs, and a line break inside a mail
# header or a chat message would let them forge headers or lines.
_BREAKS = re.compile(r"[\u2028\u2029]")


def one_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` on one line: control characters become spaces, runs of spaces one space,
    and anything past ``limit`` characters is cut with an ellipsis."""
    cleaned = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    cleaned = " ".join(_BREAKS.sub(" ", cleaned).split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


class AlertMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One alert as a notification tells it.

    Deduplicated alerts carry ``count`` (how many matches it stands for) and the first
    and last time one was seen (integer microseconds since the epoch, UTC, as stored).
    ``summary`` is a few lines describing the matching events (at most
    ``MAX_SUMMARY_LINES`` are shown; ``more_events`` says how many others exist).
    ``suppressed_before`` is set by the dispatcher: how many notifications for the same
    target, rule and severity the rate limit held back since the last one sent.

    Raises NotifyConfigError naming the field when a value is out of range.
    """

    alert_id: int
    rule_id: str
    rule_title: str
    severity: Severity
    hostname: str
    group: str
    first_seen_us: int
    last_seen_us: int
    count: int = 1
    summary: tuple[str, ...] = ()
    more_events: int = 0
    console_url: str
    locale: Locale = "en"
    suppressed_before: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise NotifyConfigError(f"count: must be at least 1, got {self.count}")
        if self.more_events < 0 or self.suppressed_before < 0:
            raise NotifyConfigError("more_events, suppressed_before: must not be negative")
        if self.last_seen_us < self.first_seen_us:
            raise NotifyConfigError("last_seen_us: earlier than first_seen_us")
        if not self.rule_id or not self.rule_title.strip():
            raise NotifyConfigError("rule_id, rule_title: must not be empty")
        url = urlsplit(self.console_url)
        if (
            url.scheme not in ("http", "https")
            or not url.hostname
            or one_line(self.console_url) != self.console_url
        ):
            raise NotifyConfigError(
                f"console_url: {self.console_url!r} is not an http(s) URL on one line"
            )

    # -- rendering helpers shared by the transports ---------------------------------

    def text(self, key: str, **values: object) -> str:
        return STRINGS[self.locale][key].format(**values)

    @property
    def severity_label(self) -> str:
        return self.text(self.severity.value)

    @property
    def subject(self) -> str:
        """One line, control characters removed: safe for a mail header."""
        key = "subject" if self.count == 1 else "subject_count"
        return one_line(
            self.text(
                key,
                severity=self.severity_label,
                title=one_line(self.rule_title, 120),
                hostname=one_line(self.hostname, 80),
                count=self.count,
            ),
            250,
        )

    def facts(self) -> list[tuple[str, str]]:
        """(label, value) pairs, one line each, in display order."""
        return [
            (self.text("rule"), one_line(f"{self.rule_title} ({self.rule_id})")),
            (self.text("severity"), self.severity_label),
            (self.text("device"), one_line(self.hostname)),
            (self.text("group"), one_line(self.group)),
            (self.text("first_seen"), format_us(self.first_seen_us)),
            (self.text("last_seen"), format_us(self.last_seen_us)),
            (self.text("count"), str(self.count)),
        ]

    def event_lines(self) -> list[str]:
        """The summary lines to show, each on one line, plus "… and N more" if any."""
        lines = [one_line(line) for line in self.summary[:MAX_SUMMARY_LINES]]
        hidden = self.more_events + max(0, len(self.summary) - MAX_SUMMARY_LINES)
        if hidden:
            lines.append(self.text("more_events", n=hidden))
        return lines

    def suppressed_note(self) -> str:
        """A sentence about held-back notifications, or empty when there were none."""
        if not self.suppressed_before:
            return ""
        return self.text("suppressed", n=self.suppressed_before)

    def plain_text(self) -> str:
        """The whole message as plain text (mail body, chat fallback text)."""
        width = max(len(label) for label, _ in self.facts())
        out = [self.subject, ""]
        out += [f"{label.ljust(width)}  {value}" for label, value in self.facts()]
        lines = self.event_lines()
        if lines:
            out += ["", self.text("events") + ":"] + [f"  {line}" for line in lines]
        if note := self.suppressed_note():
            out += ["", note]
        out += ["", f"{self.text('open')}: {self.console_url}", ""]
        return "\n".join(out)
