"""Console: alert rules (administrators only, permission ``rules``).

- ``/rules``: every rule in force — the built-in pack, custom YAML sources, imported
  Sigma rules, and the device-state rules (agent offline, outdated) — each switchable
  on and off; and the stored sources that no longer load, with the reason.
- ``/rules/lists``: the named lists rules refer to, edited in a textarea or replaced by
  an uploaded text file, checked line by line (``rule_list_form``).
- ``/rules/custom/...``: custom YAML rule sources, checked with ``check_custom_source``
  before anything is stored; an error names (and shows) its line.
- ``/rules/sigma/import``: a Sigma rule pasted or uploaded; the page says which of its
  fields Sekimori's events lack (conditions on them never match).

Every change is stored with a ``rules_revision`` bump (ingest picks it up within a
second) and audited.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final
from urllib.parse import quote

import sqlalchemy as sa
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.alerting.ruleset import build_rules, check_custom_source
from sekimori.server.alerting.state_rules import STATE_RULES
from sekimori.server.console.i18n import gettext
from sekimori.server.console.routes.alerts import severity_label
from sekimori.server.console.rule_list_form import (
    ListEntryError,
    check_list_name,
    decode_text_upload,
    list_entries,
)
from sekimori.server.console.rule_view import (
    LIST_HINTS,
    SourceError,
    list_change_problems,
    list_users,
    rule_rows,
    source_error,
)
from sekimori.server.console.web import PageContext, page
from sekimori.server.rules import (
    BUILTIN_LISTS,
    Rule,
    RuleError,
    SigmaImport,
    import_sigma,
)
from sekimori.server.rules.language import MAX_RULE_FILE_BYTES
from sekimori.server.store.rule_config import (
    CustomRules,
    RuleFormat,
    delete_custom_rules,
    load_rule_config,
    rule_lists_info,
    save_custom_rules,
    save_rule_list,
    set_rule_enabled,
)

__all__ = ["routes"]

# A custom source's name: stored in rules_custom.name; "new" is the creation page.
_SOURCE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_STATE_RULE_IDS: Final = frozenset(rule.id for rule in STATE_RULES)
MAX_LIST_UPLOAD_BYTES: Final = 4 * 1024 * 1024
# Room for the other fields and the multipart framing around a text or file at its limit.
_FORM_OVERHEAD: Final = 64 * 1024
_EXAMPLE_RULE: Final = """\
- id: custom.gambling_sites
  title: Visit to a gambling site
  severity: low
  kinds: [web.visit]
  match:
    host: {domain_in: [casino.example, poker.example]}
"""


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _not_found(ctx: PageContext) -> Response:
    return ctx.render("not_found.html", status=404)


def _uploaded_text(ctx: PageContext, limit: int) -> str:
    """The text of the form's ``file`` part. Raises ListEntryError (too large, not
    UTF-8, or missing)."""
    upload = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ListEntryError(0, gettext("Choose a file to upload."))
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ListEntryError(
            0,
            gettext("The file is larger than %(size)s MiB.") % {"size": limit // (1024 * 1024)},
        )
    return decode_text_upload(data)


# --- the rule list -----------------------------------------------------------------


@page("rules")
def rules_page(ctx: PageContext) -> Response:
    with ctx.engine.connect() as conn:
        config = load_rule_config(conn)
    built = build_rules(config)
    return ctx.render(
        "rules.html",
        rules=rule_rows(built, config),
        errors=built.errors,
        severity_label=severity_label,
        changed=ctx.query.get("changed", ""),
        deleted=ctx.query.get("deleted", ""),
    )


@page("rules")
def switch_rule(ctx: PageContext) -> Response:
    rule_id = str(ctx.request.path_params["rule_id"])
    wanted = ctx.field("enabled")
    if wanted not in ("on", "off"):
        return Response("enabled must be on or off", status_code=400)
    enabled = wanted == "on"
    with ctx.engine.begin() as conn:
        config = load_rule_config(conn)
        rows = {row.id: row for row in rule_rows(build_rules(config), config)}
        if rule_id not in rows:
            return _not_found(ctx)
        set_rule_enabled(conn, rule_id, enabled, actor=ctx.user.username, now_us=now_us())
    ctx.audit(
        "rule.enable",
        rule_id,
        enabled=enabled,
        previous=rows[rule_id].enabled,
        origin=rows[rule_id].origin,
    )
    return _redirect(f"/rules?changed={quote(rule_id, safe='')}#rule-{quote(rule_id, safe='')}")


# --- named lists -------------------------------------------------------------------


@page("rules")
def lists_page(ctx: PageContext) -> Response:
    return _lists_page(ctx)


def _lists_page(ctx: PageContext, *, status: int = 200, error: str = "") -> Response:
    with ctx.engine.connect() as conn:
        config = load_rule_config(conn)
        stored = rule_lists_info(conn)
    names = sorted(set(BUILTIN_LISTS) | set(stored))
    return ctx.render(
        "rules_lists.html",
        status=status,
        names=names,
        stored=stored,
        used_by=list_users(build_rules(config)),
        builtin=BUILTIN_LISTS,
        hints=LIST_HINTS,
        error=error,
    )


@page("rules")
def new_list(ctx: PageContext) -> Response:
    name = ctx.query.get("name", "").strip()
    try:
        check_list_name(name)
    except ValueError:
        return _lists_page(ctx, status=400, error="bad_name")
    return _redirect(f"/rules/lists/{name}")


def _list_editor(
    ctx: PageContext,
    name: str,
    *,
    status: int = 200,
    text: str | None = None,
    error: str = "",
    saved: bool = False,
) -> Response:
    with ctx.engine.connect() as conn:
        config = load_rule_config(conn)
        info = rule_lists_info(conn).get(name)
    return ctx.render(
        "rules_list.html",
        status=status,
        list_name=name,
        info=info,
        text="\n".join(info.entries) + "\n" if text is None and info else text or "",
        used_by=list_users(build_rules(config)).get(name, []),
        hint=LIST_HINTS.get(name),
        error=error,
        saved=saved or ctx.query.get("saved") == "1",
        max_upload_mib=MAX_LIST_UPLOAD_BYTES // (1024 * 1024),
    )


def _list_name(ctx: PageContext) -> str | None:
    name = str(ctx.request.path_params["name"])
    try:
        return check_list_name(name)
    except ValueError:
        return None


@page("rules")
def list_page(ctx: PageContext) -> Response:
    name = _list_name(ctx)
    return _not_found(ctx) if name is None else _list_editor(ctx, name)


@page(
    "rules",
    max_files=1,
    max_part_size=MAX_LIST_UPLOAD_BYTES,
    max_body=MAX_LIST_UPLOAD_BYTES + _FORM_OVERHEAD,
)
def save_list(ctx: PageContext) -> Response:
    name = _list_name(ctx)
    if name is None:
        return _not_found(ctx)
    from_file = ctx.field("mode") == "file"
    text = ctx.field("entries")
    try:
        if from_file:
            text = _uploaded_text(ctx, MAX_LIST_UPLOAD_BYTES)
        entries = list_entries(name, text)
    except ListEntryError as exc:
        return _list_editor(ctx, name, status=400, text=None if from_file else text, error=str(exc))
    with ctx.engine.begin() as conn:
        config = load_rule_config(conn)
        problems = list_change_problems(config, name, entries)
        if problems:
            error = gettext("Not saved: with this list, %(problem)s") % {"problem": problems[0]}
            return _list_editor(ctx, name, status=400, text=text, error=error)
        old = set(config.lists.get(name, ()))
        save_rule_list(conn, name, entries, actor=ctx.user.username, now_us=now_us())
    new = set(entries)
    upload = ctx.form.get("file") if from_file and ctx.form is not None else None
    ctx.audit(
        "rule.list.save",
        name,
        entries=len(entries),
        added=len(new - old),
        removed=len(old - new),
        source="file" if from_file else "form",
        **({"filename": upload.filename} if isinstance(upload, UploadFile) else {}),
    )
    return _redirect(f"/rules/lists/{name}?saved=1")


# --- custom rule sources and Sigma imports -------------------------------------------


def _stored_source(conn: sa.Connection, name: str) -> CustomRules | None:
    return next((c for c in load_rule_config(conn).custom if c.name == name), None)


def _sigma_details(source: CustomRules | None, text: str) -> SigmaImport | None:
    if source is None or source.format != "sigma":
        return None
    try:
        return import_sigma(text, source.name)
    except RuleError:
        return None


def _custom_editor(
    ctx: PageContext,
    name: str,
    *,
    stored: CustomRules | None,
    status: int = 200,
    text: str | None = None,
    error: SourceError | None = None,
    form_error: str = "",
) -> Response:
    source_text = text if text is not None else stored.source if stored else _EXAMPLE_RULE
    rules: list[Rule] = []
    if stored is not None:
        with ctx.engine.connect() as conn:
            config = load_rule_config(conn)
        built = build_rules(config)
        rules = [r for r in built.rules if built.origin.get(r.id) == name]
    return ctx.render(
        "rules_custom.html",
        status=status,
        source_name=name,
        stored=stored,
        text=source_text,
        rules=rules,
        sigma=_sigma_details(stored, stored.source) if stored else None,
        error=error,
        form_error=form_error,
        saved=ctx.query.get("saved") == "1",
        imported=ctx.query.get("imported") == "1",
        severity_label=severity_label,
    )


def _save_source(
    ctx: PageContext, name: str, format: RuleFormat, text: str, *, creating: bool
) -> Response | list[Rule]:
    """Check and store a source; the rules stored, or the page showing why not."""
    with ctx.engine.begin() as conn:
        config = load_rule_config(conn)
        stored = next((c for c in config.custom if c.name == name), None)
        if creating and stored is not None:
            return _custom_editor(
                ctx, name, stored=None, status=400, text=text, form_error="exists"
            )
        if not creating and stored is None:
            return _not_found(ctx)
        try:
            rules = check_custom_source(format, text, name, config)
            for rule in rules:
                # The state rules are not in the rule set, but share its switches.
                if rule.id in _STATE_RULE_IDS:
                    raise RuleError(
                        f"{name} line {rule.line}: rule id {rule.id!r} is already used by built-in"
                    )
        except RuleError as exc:
            return _custom_editor(
                ctx,
                name,
                stored=stored,
                status=400,
                text=text,
                error=source_error(exc, text),
            )
        save_custom_rules(conn, name, format, text, actor=ctx.user.username, now_us=now_us())
    return rules


@page("rules")
def new_custom_page(ctx: PageContext) -> Response:
    return _custom_editor(ctx, "", stored=None)


@page("rules")
def create_custom(ctx: PageContext) -> Response:
    name = ctx.field("name").strip()
    text = ctx.field("source")
    if not _SOURCE_NAME.match(name) or name == "new":
        return _custom_editor(ctx, name, stored=None, status=400, text=text, form_error="bad_name")
    saved = _save_source(ctx, name, "yaml", text, creating=True)
    if isinstance(saved, Response):
        return saved
    ctx.audit("rule.custom.save", name, format="yaml", rules=[r.id for r in saved], created=True)
    return _redirect(f"/rules/custom/{quote(name, safe='')}?saved=1")


@page("rules")
def custom_page(ctx: PageContext) -> Response:
    name = str(ctx.request.path_params["name"])
    with ctx.engine.connect() as conn:
        stored = _stored_source(conn, name)
    return _not_found(ctx) if stored is None else _custom_editor(ctx, name, stored=stored)


@page("rules")
def save_custom(ctx: PageContext) -> Response:
    name = str(ctx.request.path_params["name"])
    with ctx.engine.connect() as conn:
        stored = _stored_source(conn, name)
    if stored is None:
        return _not_found(ctx)
    saved = _save_source(ctx, name, stored.format, ctx.field("source"), creating=False)
    if isinstance(saved, Response):
        return saved
    ctx.audit(
        "rule.custom.save", name, format=stored.format, rules=[r.id for r in saved], created=False
    )
    return _redirect(f"/rules/custom/{quote(name, safe='')}?saved=1")


@page("rules")
def delete_custom(ctx: PageContext) -> Response:
    name = str(ctx.request.path_params["name"])
    with ctx.engine.begin() as conn:
        stored = _stored_source(conn, name)
        if stored is None:
            return _not_found(ctx)
        delete_custom_rules(conn, name)
    ctx.audit("rule.custom.delete", name, format=stored.format)
    return _redirect(f"/rules?deleted={quote(name, safe='')}")


def _sigma_page(
    ctx: PageContext,
    *,
    status: int = 200,
    text: str = "",
    name: str = "",
    error: SourceError | None = None,
) -> Response:
    return ctx.render(
        "rules_sigma.html",
        status=status,
        text=text,
        source_name=name,
        error=error,
        max_kib=MAX_RULE_FILE_BYTES // 1024,
    )


def _sigma_error(exc: RuleError, text: str) -> SourceError:
    # A file of several rules (SigmaHQ's own are one per file; collections are not):
    # point at the second document rather than YAML's first line number.
    if "expected a single document" in str(exc):
        lines = [int(n) for n in re.findall(r"\bline (\d+)", str(exc))]
        second = lines[-1] if lines else 0
        message = gettext(
            "The text holds more than one YAML document (separated by ---): import one "
            "Sigma rule at a time. The second begins with the --- on line %(line)s."
        ) % {"line": second}
        located = source_error(RuleError(f"line {second}"), text)
        return dataclasses.replace(located, message=message)
    return source_error(exc, text)


@page("rules")
def sigma_page(ctx: PageContext) -> Response:
    return _sigma_page(ctx)


@page("rules", max_files=1, max_body=MAX_RULE_FILE_BYTES + _FORM_OVERHEAD)
def sigma_import(ctx: PageContext) -> Response:
    text = ctx.field("source")
    name = ctx.field("name").strip()
    try:
        if ctx.field("mode") == "file":
            text = _uploaded_text(ctx, MAX_RULE_FILE_BYTES)
    except ListEntryError as exc:
        error = SourceError(str(exc), exc.line, ())
        return _sigma_page(ctx, status=400, text="", name=name, error=error)
    try:
        imported = import_sigma(text, name or "sigma")
    except RuleError as exc:
        return _sigma_page(ctx, status=400, text=text, name=name, error=_sigma_error(exc, text))
    if not name:
        name = imported.rule.id[:128]
    if not _SOURCE_NAME.match(name) or name == "new":
        error = SourceError(gettext("A name is 1 to 128 letters, digits or . _ : -."), 0, ())
        return _sigma_page(ctx, status=400, text=text, name=name, error=error)
    with ctx.engine.connect() as conn:
        replaced = _stored_source(conn, name)
    if replaced is not None and replaced.format != "sigma":
        error = SourceError(
            gettext("A custom YAML source is named %(name)s already: choose another name.")
            % {"name": name},
            0,
            (),
        )
        return _sigma_page(ctx, status=400, text=text, name=name, error=error)
    saved = _save_source(ctx, name, "sigma", text, creating=replaced is None)
    if isinstance(saved, Response):
        return saved
    ctx.audit(
        "rule.sigma.import",
        name,
        rule_id=imported.rule.id,
        sigma_id=imported.sigma_id,
        title=imported.rule.title,
        unsupported_fields=list(imported.unsupported_fields),
        replaced=replaced is not None,
    )
    return _redirect(f"/rules/custom/{quote(name, safe='')}?imported=1")


# Lists and custom sources first: "/rules/lists/x" must not reach the switch route.
routes: list[BaseRoute] = [
    Route("/rules", rules_page, methods=["GET"]),
    Route("/rules/lists", lists_page, methods=["GET"]),
    Route("/rules/lists/new", new_list, methods=["GET"]),
    Route("/rules/lists/{name}", list_page, methods=["GET"]),
    Route("/rules/lists/{name}", save_list, methods=["POST"]),
    Route("/rules/custom/new", new_custom_page, methods=["GET"]),
    Route("/rules/custom/new", create_custom, methods=["POST"]),
    Route("/rules/custom/{name}", custom_page, methods=["GET"]),
    Route("/rules/custom/{name}", save_custom, methods=["POST"]),
    Route("/rules/custom/{name}/delete", delete_custom, methods=["POST"]),
    Route("/rules/sigma/import", sigma_page, methods=["GET"]),
    Route("/rules/sigma/import", sigma_import, methods=["POST"]),
    Route("/rules/{rule_id}/enabled", switch_rule, methods=["POST"]),
]
