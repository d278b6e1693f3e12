"""The log search's and reports' view of events: the kind choices (grouped by
domain, labelled as in the timelines) and the step from the page's filter to the
store's criteria."""

from __future__ import annotations

from sekimori.server.console.event_summary import kind_label
from sekimori.server.console.filters import ActivityFilter, kind_domains
from sekimori.server.store.event_search import EventCriteria

__all__ = ["criteria", "kind_choices"]


def kind_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """(domain label, [(value, label)]) for the kind select: the whole domain first
    ("file."), then each of its kinds."""
    choices = []
    for domain, kinds in kind_domains().items():
        label = kind_label(f"{domain}.")
        options = [(f"{domain}.", label)] + [(kind, kind_label(kind)) for kind in kinds]
        choices.append((label, options))
    return choices


def criteria(activity: ActivityFilter) -> EventCriteria:
    return EventCriteria(
        since_us=activity.since_us,
        until_us=activity.until_us,
        device=activity.device,
        group=activity.group,
        user=activity.user,
        kinds=activity.kinds,
        text=activity.q,
    )
