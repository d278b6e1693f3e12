"""The Japanese catalog covers every message the console shows, placeholders intact."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from sekimori.server.console import i18n

CONSOLE = Path(i18n.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _source_messages() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        str(CONSOLE),
        method_map=[("templates/**.html", "jinja2"), ("**.py", "python")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}},
        keywords={"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)},
    ):
        if isinstance(message, str):
            found.add(message)
        else:
            found.update(m for m in message if m)
    return found


def _japanese() -> dict[str, str]:
    entries: dict[str, str] = {}
    for po in sorted((CONSOLE / "locale" / "ja" / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale="ja"):
                if message.id and isinstance(message.id, str):
                    entries[message.id] = str(message.string)
    return entries


def test_every_console_message_has_a_japanese_translation() -> None:
    wanted = _source_messages()
    assert len(wanted) > 40  # the extractor found the templates
    ja = _japanese()
    missing = sorted(m for m in wanted if not ja.get(m))
    stub = "\n".join(f'msgid "{m}"\nmsgstr ""\n' for m in missing)
    assert not missing, f"add to a locale/ja/LC_MESSAGES/*.po file:\n\n{stub}"


def test_translations_keep_their_placeholders() -> None:
    for source, translated in _japanese().items():
        assert sorted(PLACEHOLDER.findall(source)) == sorted(PLACEHOLDER.findall(translated)), (
            source
        )


def test_catalogs_hold_no_orphans() -> None:
    orphans = sorted(set(_japanese()) - _source_messages())
    assert not orphans, f"no longer used, remove: {orphans}"


def test_locale_follows_the_user_then_the_browser() -> None:
    assert i18n.pick_locale(None, "ja,en-US;q=0.9") == "ja"
    assert i18n.pick_locale(None, "en-US,en;q=0.9,ja;q=0.5") == "en"
    assert i18n.pick_locale(None, "ja-JP") == "ja"
    assert i18n.pick_locale(None, "fr-FR") == "en"
    assert i18n.pick_locale(None, None) == "en"
    assert i18n.pick_locale("ja", "en") == "ja"
    assert i18n.pick_locale("en", "ja") == "en"
    assert i18n.pick_locale(None, "ja;q=abc, en;q=0.1") == "en"


def test_japanese_is_served_from_the_catalog() -> None:
    catalogs = i18n.Catalogs()
    i18n.use_locale("ja", catalogs.get("ja"))
    try:
        assert i18n.gettext("Devices") == "デバイス"
    finally:
        i18n.use_locale("en", catalogs.get("en"))
    assert i18n.gettext("Devices") == "Devices"
