"""Reading an action's parameters from its ``[[actions]]`` table, and rendering typed ones.

Every string parameter is a template, parsed when the job loads; a malformed one is an error
naming ``actions[i].param``. Typed values (integers, times, ADF) are converted per row at render,
so a bad value in row 17 is an error naming row 17, found before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runner.actions.adf import EXPECTED as ADF_EXPECTED
from runner.actions.adf import TEXT_LIMIT, adf_problem, is_empty, text_length, text_to_adf
from runner.actions.base import RenderError, fill
from runner.config.tables import MISSING, Table, describe, excerpt
from runner.job.templates import JsonTemplate, Template, TemplateError

TEMPLATE = "a template: text with {column} placeholders"


class Params:
    """An action's table, read as templates."""

    def __init__(self, t: Table, columns: frozenset[str] | None = None):
        self.t = t
        self.columns = columns

    def _check(self, name: str, placeholders: frozenset[str]) -> None:
        """Every placeholder must name a source column (when the columns are known)."""
        if self.columns is None:
            return
        unknown = sorted(placeholders - self.columns)
        if unknown:
            known = excerpt(", ".join(sorted(self.columns))) or "none"
            found = ", ".join(f"{{{u}}}" for u in unknown)
            raise self.t.error(name, f"placeholders naming source columns ({known})", found)

    def template(self, name: str, default: Any = MISSING) -> Template:
        text: str = self.t.string(name, default, expected=f"a string ({TEMPLATE})")
        return self.template_text(name, text)

    def template_text(self, name: str, text: str) -> Template:
        """``text`` (part of parameter ``name``) as a template."""
        try:
            template = Template(text)
        except TemplateError as exc:
            raise self.t.error(name, TEMPLATE, str(exc)) from None
        self._check(name, template.placeholders)
        return template

    def template_or_int(self, name: str) -> Template:
        value = self.t.raw(name, expected="an integer or a template")
        if isinstance(value, int) and not isinstance(value, bool):
            return Template(str(value))
        if not isinstance(value, str):
            raise self.t.error(name, "an integer or a template", describe(value))
        return self.template(name)

    def _json(self, name: str, value: Any) -> JsonTemplate:
        try:
            template = JsonTemplate(value)
        except TemplateError as exc:
            raise self.t.error(name, f"JSON whose strings are templates ({TEMPLATE})",
                               str(exc)) from None
        self._check(name, template.placeholders)
        return template

    def json_value(self, name: str) -> JsonTemplate:
        """Any JSON value (string, number, boolean, table, list)."""
        return self._json(name, self.t.raw(name, expected="a JSON value"))

    def json_table(self, name: str, *, required: bool) -> JsonTemplate | None:
        value = self.t.raw(name, MISSING if required else None, expected="a table")
        if value is None:
            return None
        if not isinstance(value, dict) or (required and not value):
            raise self.t.error(name, "a table" + (" (not empty)" if required else ""),
                               describe(value))
        return self._json(name, value)

    def adf(self, name: str) -> JsonTemplate:
        value = self.t.raw(name, expected="an ADF document")
        problem = adf_problem(value)
        if problem:
            raise self.t.error(name, ADF_EXPECTED, problem)
        return self._json(name, value)

    @staticmethod
    def render_adf(param: str, value: Template | JsonTemplate, fields: Mapping[str, str]
                   ) -> dict[str, Any]:
        """Plain text -> ADF, or an ADF template filled in; never an empty document."""
        if isinstance(value, Template):
            doc = text_to_adf(fill(param, value, fields))
        else:
            try:
                doc = value.render(fields)
            except TemplateError as exc:
                raise RenderError(param, str(exc)) from None
        if is_empty(doc):
            raise RenderError(param, "expected some text, found an empty document")
        length = text_length(doc)
        if length > TEXT_LIMIT:
            raise RenderError(param, f"expected at most {TEXT_LIMIT:,} characters (Jira Cloud's "
                              f"limit for a text field), found {length:,}")
        return doc


def adf_param(p: Params, text_key: str, adf_key: str) -> Template | JsonTemplate:
    """Exactly one of ``text_key`` (plain text) and ``adf_key`` (an ADF document)."""
    if (text_key in p.t) == (adf_key in p.t):
        found = "both" if text_key in p.t else "neither"
        raise p.t.error(text_key, f"exactly one of {text_key} (plain text) or {adf_key} (ADF)",
                        found)
    return p.template(text_key) if text_key in p.t else p.adf(adf_key)


def optional_adf_param(p: Params, text_key: str, adf_key: str) -> Template | JsonTemplate | None:
    if text_key not in p.t and adf_key not in p.t:
        return None
    return adf_param(p, text_key, adf_key)


def int_param(param: str, template: Template, fields: Mapping[str, str], *, minimum: int
              ) -> int:
    text = fill(param, template, fields).strip()
    try:
        value = int(text)
    except ValueError:
        raise RenderError(param, f"expected an integer >= {minimum}, found {text!r}") from None
    if value < minimum:
        raise RenderError(param, f"expected an integer >= {minimum}, found {value}")
    return value


def started_param(param: str, template: Template, fields: Mapping[str, str]) -> str:
    """An ISO 8601 time, sent as RFC 3339 with milliseconds (the spec's ``date-time``).

    Accepts ``2024-05-01T09:30:00Z``, ``...+02:00``, Jira's own ``...000+0000`` and a bare date;
    a time without an offset is taken as UTC.
    """
    text = fill(param, template, fields).strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise RenderError(
            param, f"expected an ISO 8601 time (2024-05-01T09:30:00+00:00), found {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.isoformat(timespec="milliseconds")
