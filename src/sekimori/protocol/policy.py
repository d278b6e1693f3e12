"""The collection policy of a device group: what its agents collect, and nothing more.

A policy is data the server keeps per device group (versioned, see
``sekimori.server.store.policies``) and sends to the group's agents. It is defined
here, in the protocol package, because both ends read it: the server validates and
stores it (``sekimori.server.policies.validate_policy``), and the agent will apply it
to its collectors (next step of issue 5: the push over the channel and the agent's
merge of ``collector_overrides`` into ``AgentSettings.collectors``).

A policy can only change what an agent *collects*. No field names a program, a
command line or a script; every leaf is a bool, a number, a bounded string or a list
of them (``tests/protocol/test_policy.py`` walks the types and keeps it that way).
Machine-local settings of a collector (where ``utmp`` or the CUPS log lives, which X
display to watch, the agent's state directory) are deliberately *not* in a policy:
they describe the PC, not what to record, and a server that could point a collector
at any file could read that file. The drift test in ``tests/protocol`` lists them.

Every collector field here is optional: ``None`` means "the agent's own setting".
Field types mirror the agent's collector settings classes (the protocol must not
import the agent); ``tests/protocol/test_policy_drift.py`` fails when they diverge.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# One list of package managers for the events and the policy that selects them.
from sekimori.protocol.events.inventory import Manager

__all__ = [
    "COLLECTOR_NAMES",
    "DEVICE_NOTICE_MAX_CHARS",
    "RETENTION_DOMAINS",
    "CollectorPolicies",
    "DevicesPolicy",
    "FilesPolicy",
    "InventoryPolicy",
    "LiveViewPolicy",
    "NetworkPolicy",
    "NoticeMode",
    "Policy",
    "PrintingPolicy",
    "PrivacyPolicy",
    "ProcessesPolicy",
    "RetentionPolicy",
    "ScreensPolicy",
    "SessionsPolicy",
    "WebPolicy",
    "WindowPolicy",
    "WorkingHours",
    "collector_overrides",
]

DEVICE_NOTICE_MAX_CHARS = 2000

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
# A glob, domain, application name or path: bounded so a policy stays small.
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Patterns = Annotated[list[Pattern], msgspec.Meta(max_length=1000)]
Browser = Literal["chromium", "chrome", "edge", "brave", "firefox"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# 00:00-23:59 (24:00 allowed as an end: "until midnight").
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=3650)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One collector's part of a policy. ``enabled`` is always the policy's word."""

    enabled: bool = True


class InventoryPolicy(_Section):
    interval_seconds: Positive | None = None
    full_interval_seconds: Positive | None = None
    managers: list[Manager] | None = None
    exclude_packages: Patterns | None = None
    command_timeout_seconds: Positive | None = None


class ProcessesPolicy(_Section):
    interval_seconds: Positive | None = None
    exclude_executables: Patterns | None = None
    hash_max_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    max_argv_bytes: Annotated[int, msgspec.Meta(ge=64, le=1 << 20)] | None = None
    use_connector: bool | None = None


class NetworkPolicy(_Section):
    interval_seconds: Positive | None = None
    sample_seconds: Positive | None = None
    include_loopback: bool | None = None
    include_udp: bool | None = None
    report_persistent: bool | None = None
    exclude_executables: Patterns | None = None
    max_entries: Annotated[int, msgspec.Meta(ge=1)] | None = None


class WebPolicy(_Section):
    interval_seconds: Positive | None = None
    browsers: list[Browser] | None = None
    exclude_domains: Patterns | None = None
    exclude_schemes: Patterns | None = None
    mask_urls_to_domain: bool | None = None
    backfill_hours: NonNegative | None = None


class FilesPolicy(_Section):
    interval_seconds: Positive | None = None
    # Watched folders and exclusions: what to record, not where the agent lives.
    paths: Patterns | None = None
    exclude: Patterns | None = None
    coalesce_seconds: NonNegative | None = None
    watch_removable: bool | None = None


class WindowPolicy(_Section):
    interval_seconds: Positive | None = None
    record_titles: bool | None = None
    exclude_applications: Patterns | None = None
    idle_minutes: Positive | None = None
    idle_seconds: Positive | None = None
    title_min_interval_seconds: NonNegative | None = None


class DevicesPolicy(_Section):
    interval_seconds: Positive | None = None


class SessionsPolicy(_Section):
    interval_seconds: Positive | None = None
    heartbeat_seconds: Positive | None = None
    suspend_threshold_seconds: Positive | None = None


class PrintingPolicy(_Section):
    interval_seconds: Positive | None = None


class ScreensPolicy(_Section):
    """Screen capture. The one section that is off unless the policy turns it on:
    pictures of the screen are the most sensitive thing an agent can record."""

    enabled: bool = False
    interval_seconds: NonNegative | None = None
    on_window_change: bool | None = None
    max_bytes_per_day: Annotated[int, msgspec.Meta(ge=0)] | None = None
    scale: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    format: Literal["jpeg", "webp"] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    burst_frames: Annotated[int, msgspec.Meta(ge=0, le=60)] | None = None
    change_threshold: Annotated[float, msgspec.Meta(ge=0, le=255)] | None = None
    exclude_applications: Patterns | None = None


class CollectorPolicies(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One section per collector of the agent's registry (same names)."""

    inventory: InventoryPolicy = msgspec.field(default_factory=InventoryPolicy)
    processes: ProcessesPolicy = msgspec.field(default_factory=ProcessesPolicy)
    network: NetworkPolicy = msgspec.field(default_factory=NetworkPolicy)
    web: WebPolicy = msgspec.field(default_factory=WebPolicy)
    files: FilesPolicy = msgspec.field(default_factory=FilesPolicy)
    window: WindowPolicy = msgspec.field(default_factory=WindowPolicy)
    devices: DevicesPolicy = msgspec.field(default_factory=DevicesPolicy)
    sessions: SessionsPolicy = msgspec.field(default_factory=SessionsPolicy)
    printing: PrintingPolicy = msgspec.field(default_factory=PrintingPolicy)
    screens: ScreensPolicy = msgspec.field(default_factory=ScreensPolicy)


COLLECTOR_NAMES: tuple[str, ...] = CollectorPolicies.__struct_fields__


class WorkingHours(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Collect only on these days between ``from`` and ``to`` (local time of
    ``timezone``, an IANA name checked on the server). ``to`` before ``from`` spans
    midnight."""

    days: Annotated[list[Day], msgspec.Meta(min_length=1, max_length=7)]
    start: ClockTime = msgspec.field(name="from")
    end: ClockTime = msgspec.field(name="to")
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"


class PrivacyPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Window titles often carry document names and mail subjects.
    record_window_titles: bool = True
    mask_urls_to_domain: bool = False
    working_hours_only: WorkingHours | None = None


NoticeText = Annotated[str, msgspec.Meta(max_length=DEVICE_NOTICE_MAX_CHARS)]


class NoticeMode(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Whether the agent tells the PC's user that it is monitored, and the text."""

    enabled: bool = False
    text_en: NoticeText = ""
    text_ja: NoticeText = ""


class RetentionPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Days to keep events of each kind domain (the part of the kind before the dot);
    ``None`` keeps them."""

    agent: RetentionDays | None = None
    device: RetentionDays | None = None
    file: RetentionDays | None = None
    inventory: RetentionDays | None = None
    network: RetentionDays | None = None
    printing: RetentionDays | None = None
    process: RetentionDays | None = None
    screen: RetentionDays | None = None
    session: RetentionDays | None = None
    web: RetentionDays | None = None
    window: RetentionDays | None = None

    def as_dict(self) -> dict[str, int]:
        """The domains with a limit, and their days."""
        return {
            name: days
            for name in self.__struct_fields__
            if (days := getattr(self, name)) is not None
        }


RETENTION_DOMAINS: tuple[str, ...] = RetentionPolicy.__struct_fields__


class LiveViewPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Whether console users (with the ``live`` permission) may watch the PCs' screens
    live: ``off`` (the default: the agent refuses every request), ``allowed`` (the
    person sees an indicator while watched), ``consent`` (the person is asked first
    and may decline; no answer within ``consent_timeout_seconds`` is a refusal). A
    session ends by itself after ``max_minutes``."""

    mode: Literal["off", "allowed", "consent"] = "off"
    consent_timeout_seconds: Annotated[int, msgspec.Meta(ge=5, le=300)] = 30
    max_minutes: Annotated[int, msgspec.Meta(ge=1, le=480)] = 60


class Policy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A device group's collection policy (the default instance: collect as the
    agents' own settings say, keep everything, no notice)."""

    collectors: CollectorPolicies = msgspec.field(default_factory=CollectorPolicies)
    privacy: PrivacyPolicy = msgspec.field(default_factory=PrivacyPolicy)
    notice_mode: NoticeMode = msgspec.field(default_factory=NoticeMode)
    # Applications (WM_CLASS / executable names) and web domains never recorded.
    excluded_applications: Patterns = msgspec.field(default_factory=list)
    excluded_domains: Patterns = msgspec.field(default_factory=list)
    retention_days: RetentionPolicy = msgspec.field(default_factory=RetentionPolicy)
    live_view: LiveViewPolicy = msgspec.field(default_factory=LiveViewPolicy)


def collector_overrides(policy: Policy, name: str) -> dict[str, Any]:
    """What the policy sets in collector ``name``'s settings section: its own
    non-``None`` fields, with the privacy options and exclusion lists folded into the
    collectors they concern (the agent merges this over its local section).

    Raises KeyError for a name that is not a collector.
    """
    if name not in COLLECTOR_NAMES:
        raise KeyError(name)
    section = getattr(policy.collectors, name)
    out: dict[str, Any] = {
        field: value
        for field in section.__struct_fields__
        if (value := getattr(section, field)) is not None
    }
    privacy = policy.privacy
    if name == "window":
        # The stricter setting wins: a section cannot turn titles back on.
        if not privacy.record_window_titles:
            out["record_titles"] = False
        _extend(out, "exclude_applications", policy.excluded_applications)
    elif name == "screens":
        # An application never recorded is never captured on screen either.
        _extend(out, "exclude_applications", policy.excluded_applications)
    elif name == "web":
        if privacy.mask_urls_to_domain:
            out["mask_urls_to_domain"] = True
        _extend(out, "exclude_domains", policy.excluded_domains)
    elif name in ("processes", "network"):
        # Executables are matched by path globs: "*/name" matches the name anywhere.
        _extend(out, "exclude_executables", [f"*/{a}" for a in policy.excluded_applications])
    return out


def _extend(section: dict[str, Any], field: str, extra: list[str]) -> None:
    """Add ``extra`` to a list field (only when there is something to add, so an
    empty policy list leaves the agent's own list alone)."""
    if extra:
        section[field] = list(dict.fromkeys([*section.get(field, []), *extra]))
