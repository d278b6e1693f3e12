"""What an administrator types or uploads as a named rule list, checked line by line
before it is stored.

Every list follows ``parse_list_entries``' rules (one entry per line, blank lines and
``#`` comments ignored, duplicates dropped). Lists whose entries have a form are
checked for it, and normalized so that what is stored is what the rules compare:

- ``blocked_addresses``: an IP address or a network (``203.0.113.7``,
  ``198.51.100.0/24``, ``2001:db8::/32``); a network with host bits set is refused
  (``198.51.100.7/24`` is ambiguous: did the administrator mean one address?).
- ``blocked_domains``: a domain name, lower-cased, an internationalized name in its
  ASCII (punycode) form as browsers report hosts; a URL or ``*.example.com`` is refused
  with what to write instead (a listed domain covers its subdomains already).

Errors are ``ListEntryError``: the 1-based line and a message in the console's
language.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from sekimori.server.console.i18n import gettext
from sekimori.server.store.rule_config import (
    MAX_ENTRY_CHARS,
    MAX_LIST_ENTRIES,
    parse_list_entries,
)

__all__ = [
    "ADDRESS_LISTS",
    "DOMAIN_LISTS",
    "ListEntryError",
    "check_list_name",
    "decode_text_upload",
    "list_entries",
]

ADDRESS_LISTS: Final = frozenset({"blocked_addresses"})
DOMAIN_LISTS: Final = frozenset({"blocked_domains"})

# Stored in rule_lists.name (64 characters); the rule language writes {list: name}.
_LIST_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_LABEL: Final = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_UTF8_BOM: Final = b"\xef\xbb\xbf"


class ListEntryError(ValueError):
    """A list's text cannot be stored: ``line`` (1-based, 0 for the whole text) says
    where, the message (already translated) says why and what to write."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        text = gettext("Line %(line)s: %(message)s") % {"line": line, "message": message}
        super().__init__(text if line else message)


def check_list_name(name: str) -> str:
    """The name if it is a valid list name; raises ValueError."""
    # "new" is the page that creates a list.
    if not _LIST_NAME.match(name) or name == "new":
        raise ValueError(name)
    return name


def decode_text_upload(data: bytes) -> str:
    """An uploaded text file as text: UTF-8 (a byte-order mark is dropped). Raises
    ListEntryError naming the first line that is not UTF-8."""
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ListEntryError(
            line,
            gettext(
                "the file is not UTF-8 text (Shift_JIS?). Save it as UTF-8 and upload it again."
            ),
        ) from None


def _address(entry: str) -> str:
    try:
        if "%" in entry:  # an IPv6 zone (fe80::1%eth0) names a PC's own interface
            raise ValueError(entry)
        if "/" in entry:
            return str(ipaddress.ip_network(entry, strict=True))
        return str(ipaddress.ip_address(entry))
    except ValueError:
        pass
    try:
        if "%" in entry:
            raise ValueError(entry)
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            gettext(
                "%(entry)s is not an IP address or network "
                "(write 203.0.113.7, 198.51.100.0/24 or 2001:db8::/32)."
            )
            % {"entry": entry}
        ) from None
    raise ValueError(
        gettext("%(entry)s has host bits set: write the network %(network)s, or one address.")
        % {"entry": entry, "network": str(network)}
    )


def _domain(entry: str) -> str:
    if "://" in entry or "/" in entry:
        raise ValueError(
            gettext("%(entry)s is a URL: write the domain alone (example.com).") % {"entry": entry}
        )
    if entry.startswith("*."):
        raise ValueError(
            gettext("write %(domain)s instead of %(entry)s: a listed domain covers its subdomains.")
            % {"domain": entry[2:], "entry": entry}
        )
    bad = gettext("%(entry)s is not a domain name.") % {"entry": entry}
    name = entry.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return name  # a host given as an address matches as itself
    except ValueError:
        pass
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(bad) from None
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in ascii_name.split(".")):
        raise ValueError(bad)
    return ascii_name


def list_entries(name: str, text: str) -> list[str]:
    """The entries of list ``name`` given as text (normalized for typed lists).
    Raises ListEntryError with the line of the first bad entry."""
    check = _address if name in ADDRESS_LISTS else _domain if name in DOMAIN_LISTS else None
    lines: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            lines.append("")
            continue
        if len(entry) > MAX_ENTRY_CHARS:
            raise ListEntryError(
                number,
                gettext("an entry is at most %(n)s characters.") % {"n": MAX_ENTRY_CHARS},
            )
        if "\x00" in entry:
            raise ListEntryError(number, gettext("the entry holds a NUL character."))
        if check is not None:
            try:
                entry = check(entry)
            except ValueError as exc:
                raise ListEntryError(number, str(exc)) from None
        seen.add(entry)
        if len(seen) > MAX_LIST_ENTRIES:
            raise ListEntryError(
                number,
                gettext("a list holds at most %(n)s entries.") % {"n": MAX_LIST_ENTRIES},
            )
        lines.append(entry)
    # The checks above are parse_list_entries' own, so it cannot refuse what is left;
    # it drops duplicates the way every list does.
    return parse_list_entries("\n".join(lines))
