"""The policy editor's form: a policy shown as form values, the submitted values
turned back into the JSON document ``validate_policy`` checks, and where on the form
a validation error belongs.

The form holds what administrators change most (each collector on or off, privacy,
working hours, the notice, exclusions, retention); the per-collector settings
(intervals, watched paths, exclusions) are one "advanced" YAML text — JSON is YAML
too, so either may be pasted. Switching a collector on or off is the checkboxes'
job alone: an ``enabled`` key in the advanced text is refused rather than silently
overridden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import yaml
from starlette.datastructures import FormData

from sekimori.protocol.policy import COLLECTOR_NAMES, RETENTION_DOMAINS, Policy
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.policies import PolicyError

__all__ = [
    "ADVANCED_MAX_CHARS",
    "DAYS",
    "FieldError",
    "PolicyForm",
    "field_error",
    "form_from_policy",
    "form_from_submission",
    "policy_document",
]

ADVANCED_MAX_CHARS = 100_000
DAYS: tuple[tuple[str, str], ...] = (
    ("mon", N_("Mon")),
    ("tue", N_("Tue")),
    ("wed", N_("Wed")),
    ("thu", N_("Thu")),
    ("fri", N_("Fri")),
    ("sat", N_("Sat")),
    ("sun", N_("Sun")),
)


@dataclass
class PolicyForm:
    """The editor's values as the form shows them (text, checkbox states)."""

    collectors: dict[str, bool]
    record_window_titles: bool = True
    mask_urls_to_domain: bool = False
    working_hours: bool = False
    wh_days: list[str] = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    wh_from: str = "09:00"
    wh_to: str = "18:00"
    wh_timezone: str = "UTC"
    notice_enabled: bool = False
    notice_text_ja: str = ""
    notice_text_en: str = ""
    excluded_applications: str = ""
    excluded_domains: str = ""
    retention: dict[str, str] = field(default_factory=dict)
    advanced: str = ""
    live_view: str = "off"
    live_consent_timeout: str = "30"
    live_max_minutes: str = "60"


def form_from_policy(policy: Policy, *, timezone: str) -> PolicyForm:
    """The form showing ``policy`` (``timezone``: the working hours' zone offered when
    the policy has none)."""
    sections = policy.collectors
    form = PolicyForm(
        collectors={name: getattr(sections, name).enabled for name in COLLECTOR_NAMES},
        record_window_titles=policy.privacy.record_window_titles,
        mask_urls_to_domain=policy.privacy.mask_urls_to_domain,
        wh_timezone=timezone,
        notice_enabled=policy.notice_mode.enabled,
        notice_text_ja=policy.notice_mode.text_ja,
        notice_text_en=policy.notice_mode.text_en,
        excluded_applications="\n".join(policy.excluded_applications),
        excluded_domains="\n".join(policy.excluded_domains),
        retention={
            name: "" if (days := getattr(policy.retention_days, name)) is None else str(days)
            for name in RETENTION_DOMAINS
        },
        advanced=_advanced_text(policy),
        live_view=policy.live_view.mode,
        live_consent_timeout=str(policy.live_view.consent_timeout_seconds),
        live_max_minutes=str(policy.live_view.max_minutes),
    )
    hours = policy.privacy.working_hours_only
    if hours is not None:
        form.working_hours = True
        form.wh_days = list(hours.days)
        form.wh_from, form.wh_to, form.wh_timezone = hours.start, hours.end, hours.timezone
    return form


def _advanced_text(policy: Policy) -> str:
    settings: dict[str, dict[str, Any]] = {}
    for name in COLLECTOR_NAMES:
        section = msgspec.to_builtins(getattr(policy.collectors, name))
        chosen = {
            # 30.0 seconds reads as 30 (the float field takes an int back unchanged).
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in section.items()
            if k != "enabled" and v is not None
        }
        if chosen:
            settings[name] = chosen
    if not settings:
        return ""
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def form_from_submission(form: FormData) -> PolicyForm:
    """The values an administrator submitted, as they typed them."""
    return PolicyForm(
        collectors={name: form.get(f"collector_{name}") == "on" for name in COLLECTOR_NAMES},
        record_window_titles=form.get("record_window_titles") == "on",
        mask_urls_to_domain=form.get("mask_urls_to_domain") == "on",
        working_hours=form.get("working_hours") == "on",
        wh_days=[d for d in form.getlist("wh_days") if isinstance(d, str)],
        wh_from=_text(form, "wh_from").strip(),
        wh_to=_text(form, "wh_to").strip(),
        wh_timezone=_text(form, "wh_timezone").strip(),
        notice_enabled=form.get("notice_enabled") == "on",
        notice_text_ja=_text(form, "notice_text_ja"),
        notice_text_en=_text(form, "notice_text_en"),
        excluded_applications=_text(form, "excluded_applications"),
        excluded_domains=_text(form, "excluded_domains"),
        retention={name: _text(form, f"retention_{name}").strip() for name in RETENTION_DOMAINS},
        advanced=_text(form, "advanced"),
        live_view=_text(form, "live_view").strip() or "off",
        live_consent_timeout=_text(form, "live_consent_timeout").strip(),
        live_max_minutes=_text(form, "live_max_minutes").strip(),
    )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _days(text: str) -> int | str | None:
    if not text:
        return None
    # A non-number goes to the validator as it is, which names the field.
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text) else text


def policy_document(form: PolicyForm) -> dict[str, Any]:
    """The JSON document of the submitted form, for ``validate_policy``.

    Raises PolicyError (path ``advanced``, or the collector setting) when the
    advanced text is not YAML/JSON of the right shape."""
    collectors: dict[str, Any] = {}
    for name, section in _advanced_sections(form.advanced).items():
        if isinstance(section, dict) and "enabled" in section:
            raise PolicyError(f"collectors.{name}.enabled", _ENABLED_IN_ADVANCED)
        collectors[name] = section
    for name, enabled in form.collectors.items():
        section = collectors.setdefault(name, {})
        if isinstance(section, dict):
            section["enabled"] = enabled
    hours = None
    if form.working_hours:
        hours = {
            "days": form.wh_days,
            "from": form.wh_from,
            "to": form.wh_to,
            "timezone": form.wh_timezone,
        }
    return {
        "collectors": collectors,
        "privacy": {
            "record_window_titles": form.record_window_titles,
            "mask_urls_to_domain": form.mask_urls_to_domain,
            "working_hours_only": hours,
        },
        "notice_mode": {
            "enabled": form.notice_enabled,
            "text_ja": form.notice_text_ja,
            "text_en": form.notice_text_en,
        },
        "excluded_applications": _lines(form.excluded_applications),
        "excluded_domains": _lines(form.excluded_domains),
        "retention_days": {name: _days(days) for name, days in form.retention.items()},
        "live_view": {
            "mode": form.live_view,
            "consent_timeout_seconds": _days(form.live_consent_timeout) or 30,
            "max_minutes": _days(form.live_max_minutes) or 60,
        },
    }


_ENABLED_IN_ADVANCED = "enabled-in-advanced"
_NOT_A_MAPPING = "advanced-not-a-mapping"
_TOO_LONG = "advanced-too-long"
_TOO_DEEP = "advanced-too-deep"


def _advanced_sections(text: str) -> dict[Any, Any]:
    if len(text) > ADVANCED_MAX_CHARS:
        raise PolicyError("advanced", _TOO_LONG)
    if not text.strip():
        return {}
    try:
        # safe_load builds plain data only (no tags that construct objects).
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "?:?"
        raise PolicyError("advanced", f"yaml:{where}:{problem}") from None
    except RecursionError:
        # PyYAML composes nested collections recursively: "[[[[...]]]]" ends here.
        raise PolicyError("advanced", _TOO_DEEP) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PolicyError("advanced", _NOT_A_MAPPING)
    # The validator names sections by the policy's paths.
    return {str(key): value for key, value in loaded.items()}


@dataclass(frozen=True, slots=True)
class FieldError:
    """A validation error placed on the form: the form field it belongs to ("" for
    the page), the validator's path, and the message in the user's language."""

    field: str
    path: str
    message: str


_FIELDS = {
    "privacy.record_window_titles": "record_window_titles",
    "privacy.mask_urls_to_domain": "mask_urls_to_domain",
    "privacy.working_hours_only.days": "wh_days",
    "privacy.working_hours_only.from": "wh_from",
    "privacy.working_hours_only.to": "wh_to",
    "privacy.working_hours_only.timezone": "wh_timezone",
    "privacy.working_hours_only": "working_hours",
    "notice_mode.text_ja": "notice_text_ja",
    "notice_mode.text_en": "notice_text_en",
    "notice_mode": "notice",
    "excluded_applications": "excluded_applications",
    "excluded_domains": "excluded_domains",
    "advanced": "advanced",
    "collectors": "advanced",
    "live_view.mode": "live_view",
    "live_view.consent_timeout_seconds": "live_consent_timeout",
    "live_view.max_minutes": "live_max_minutes",
}


def _field_of(path: str) -> str:
    if path.startswith("retention_days."):
        return "retention_" + path.split(".")[1]
    for prefix, name in _FIELDS.items():
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return name
    return ""


# The validator's messages (English, from msgspec or our checks) in the console's words.
_EXACT = {
    "must be positive": N_("must be greater than 0"),
    "unknown field": N_("unknown setting"),
    "not a known IANA time zone": N_("not a known time zone (for example Asia/Tokyo)"),
    "must differ from `from`": N_("must differ from the start time"),
    "lists a day twice": N_("lists a day twice"),
    "a notice needs its text in English and Japanese": N_(
        "a notice needs its text in English and Japanese"
    ),
    "expected `array` of length >= 1": N_("choose at least one"),
    _ENABLED_IN_ADVANCED: N_("switch collectors on and off with the checkboxes above"),
    _NOT_A_MAPPING: N_('write one section per collector, such as "files:" and its settings'),
    _TOO_LONG: N_("the advanced settings are too long"),
    _TOO_DEEP: N_("the advanced settings are nested too deeply"),
}
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$"),
        N_("expected %(expected)s, got %(got)s"),
    ),
    (re.compile(r"^expected `(?:int|float)` >= (?P<limit>\S+)$"), N_("must be at least %(limit)s")),
    (re.compile(r"^expected `(?:int|float)` <= (?P<limit>\S+)$"), N_("must be at most %(limit)s")),
    (
        re.compile(r"^expected `(?:int|float)` > (?P<limit>\S+)$"),
        N_("must be greater than %(limit)s"),
    ),
    (re.compile(r"^expected `(?:int|float)` < (?P<limit>\S+)$"), N_("must be less than %(limit)s")),
    (
        re.compile(r"^expected `str` of length <= (?P<limit>\d+)$"),
        N_("at most %(limit)s characters"),
    ),
    (
        re.compile(r"^expected `str` of length >= (?P<limit>\d+)$"),
        N_("at least %(limit)s characters"),
    ),
    (
        re.compile(r"^expected `array` of length <= (?P<limit>\d+)$"),
        N_("at most %(limit)s entries"),
    ),
    (re.compile(r"^expected `str` matching regex "), N_("a time as HH:MM (00:00 to 24:00)")),
    (re.compile(r"^invalid enum value (?P<value>.*)$"), N_("not an allowed value: %(value)s")),
    (re.compile(r"^not a domain name: (?P<value>.*)$"), N_("not a domain name: %(value)s")),
    (
        re.compile(r"^yaml:(?P<line>[0-9?]+):(?P<column>[0-9?]+):(?P<problem>.*)$", re.DOTALL),
        N_("not valid YAML or JSON (line %(line)s, column %(column)s): %(problem)s"),
    ),
)


def _message(message: str) -> str:
    if message in _EXACT:
        return gettext(_EXACT[message])
    for pattern, template in _PATTERNS:
        match = pattern.match(message)
        if match:
            return gettext(template) % match.groupdict()
    return message  # a message we do not know yet: the validator's own words


def field_error(error: PolicyError) -> FieldError:
    """Where ``error`` shows on the form, in the user's language."""
    return FieldError(_field_of(error.path), error.path, _message(error.message))
