"""Events of the web collector: one ``web.visit`` per page visit a browser recorded."""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "Browser", "Transition", "WebVisit"]

Browser = Literal["chromium", "chrome", "edge", "brave", "firefox"]

# One vocabulary for Chromium's page transitions and Firefox's visit types, so the
# console can ask "typed or clicked?" without knowing which browser it was.
Transition = Literal[
    "link",
    "typed",
    "bookmark",
    "subframe",
    "generated",
    "toplevel",
    "form_submit",
    "reload",
    "keyword",
    "redirect",
    "download",
    "other",
]


class WebVisit(Payload):
    """A page visit read from a browser's history.

    The event's own time is the visit time (as the browser recorded it) and its
    ``os_user`` the owner of the home folder holding the profile.

    ``masked``: the policy keeps only the site, so ``url`` is ``scheme://host/`` and
    ``title`` is empty (a page title can say as much as its address).
    """

    url: str
    title: str
    host: str
    browser: Browser
    profile: str
    transition: Transition = "other"
    masked: bool = False


KINDS: Final[dict[str, type[Payload]]] = {
    "web.visit": WebVisit,
}
