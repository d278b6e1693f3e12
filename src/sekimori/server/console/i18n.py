"""Japanese and English: gettext catalogs (Babel .po files) and locale choice.

The catalogs are the ``locale/<lang>/LC_MESSAGES/*.po`` files next to this module
(one file per console area, merged), compiled in memory at start-up (no build step,
no .mo files to forget).
English is the source language: its messages are the msgids themselves.

The locale of a request is the user's own setting, else the best match of the
browser's Accept-Language, else English. The active translations live in a context
variable, set for the thread that renders the page.
"""

from __future__ import annotations

import contextvars
import io
from pathlib import Path
from typing import Final

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

__all__ = [
    "DEFAULT_LOCALE",
    "LOCALES",
    "N_",
    "Catalogs",
    "active_locale",
    "gettext",
    "ngettext",
    "pick_locale",
    "use_locale",
]

LOCALES: Final[tuple[str, ...]] = ("en", "ja")
DEFAULT_LOCALE: Final = "en"
_LOCALE_DIR = Path(__file__).parent / "locale"


class Catalogs:
    """Every supported locale's translations, loaded once."""

    def __init__(self, directory: Path = _LOCALE_DIR) -> None:
        self._by_locale: dict[str, NullTranslations] = {DEFAULT_LOCALE: NullTranslations()}
        for lang in LOCALES:
            if lang == DEFAULT_LOCALE:
                continue
            merged: Translations | None = None
            for po in sorted((directory / lang / "LC_MESSAGES").glob("*.po")):
                with po.open("rb") as fh:
                    catalog = read_po(fh, locale=lang)
                buffer = io.BytesIO()
                write_mo(buffer, catalog)
                buffer.seek(0)
                part = Translations(fp=buffer)
                merged = part if merged is None else merged.merge(part)
            if merged is not None:
                self._by_locale[lang] = merged

    def get(self, lang: str) -> NullTranslations:
        return self._by_locale.get(lang, self._by_locale[DEFAULT_LOCALE])


def pick_locale(user_setting: str | None, accept_language: str | None) -> str:
    """The user's own choice, else the browser's preference, else English."""
    if user_setting in LOCALES:
        return user_setting
    if accept_language:
        wanted: list[tuple[float, str]] = []
        for part in accept_language.split(",")[:20]:
            tag, _, params = part.strip().partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            if tag:
                wanted.append((quality, tag.strip().replace("-", "_")))
        wanted.sort(key=lambda item: -item[0])
        best = Locale.negotiate([tag for _, tag in wanted], list(LOCALES), sep="_")
        if best is not None:
            return str(best.language)
    return DEFAULT_LOCALE


_active: contextvars.ContextVar[tuple[str, NullTranslations]] = contextvars.ContextVar(
    "sekimori_console_locale", default=(DEFAULT_LOCALE, NullTranslations())
)


def use_locale(lang: str, translations: NullTranslations) -> None:
    _active.set((lang, translations))


def active_locale() -> str:
    return _active.get()[0]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Marks a string for the catalog without translating it (translated on use)."""
    return message


def gettext(message: str) -> str:
    return _active.get()[1].ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active.get()[1].ungettext(singular, plural, n)
