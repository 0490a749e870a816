"""Safe templates: ``{column}`` substitution from a row's fields, and nothing else.

``{{`` and ``}}`` are literal braces. No expression is ever evaluated: no attribute or index
access (``{a.b}``, ``{a[0]}``), no format specs or conversions (``{a:>5}``, ``{a!r}``), unlike
``str.format``, which would let a job file reach into Python objects. Templates are parsed once
when the job loads, so a malformed one is an error before any row is read; inside JSON values
(``JsonTemplate``) every string is a template, keys and non-string scalars are kept as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class TemplateError(ValueError):
    """A template can't be parsed, or a row lacks one of its columns. The message describes
    what was found, to follow "expected a template, found ..."."""


@dataclass(frozen=True)
class _Field:
    name: str


_DOT_SEGMENTS = frozenset({".", ".."})


def dot_segment(value: str) -> bool:
    """True when ``value`` as a URL path segment would be read as ``.`` or ``..``, which
    remove a segment instead of naming one: as written, or once percent-decoded (a server or
    proxy along the way may decode it, once or more)."""
    for _ in range(3):
        if value in _DOT_SEGMENTS:
            return True
        decoded = unquote(value)
        if decoded == value:
            return False
        value = decoded
    return value in _DOT_SEGMENTS


def dot_segment_problem(value: str, template: Template) -> str | None:
    """What is wrong with ``value`` (``template`` rendered) as one path segment, or None."""
    if not dot_segment(value):
        return None
    columns = ", ".join(sorted(template.placeholders)) or "(none)"
    return (f"expected a path segment other than '.' or '..' (it would remove a segment of "
            f"the URL), found {value!r} from column {columns}")


def path_segment(value: str) -> str:
    """Percent-encode ``value`` for one URL path segment: '/', '?', '#', '%' and spaces too."""
    return quote(value, safe="")


class Template:
    """A string with ``{column}`` placeholders, parsed once."""

    __slots__ = ("_parts", "placeholders", "text")

    def __init__(self, text: str):
        self.text = text
        self._parts = _parse(text)
        self.placeholders = frozenset(p.name for p in self._parts if isinstance(p, _Field))

    @property
    def is_constant(self) -> bool:
        return not self.placeholders

    def render(
        self, fields: Mapping[str, str], encode: Callable[[str], str] | None = None
    ) -> str:
        """Fill in the row's values, each passed through ``encode`` when given."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = fields[part.name]
            except KeyError:
                raise TemplateError(f"the row has no column {part.name!r}") from None
            out.append(encode(value) if encode else value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _parse(text: str) -> tuple[str | _Field, ...]:
    parts: list[str | _Field] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif ch == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError(
                    f"an unclosed '{{' at position {i} (write {{{{ for a literal brace)"
                )
            name = text[i + 1 : end]
            if not _NAME.fullmatch(name):
                raise TemplateError(
                    f"'{{{name}}}', which is not a column name (no attribute or index access, "
                    "no format specs; write {{ and }} for literal braces)"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Field(name))
            i = end + 1
        elif ch == "}":
            raise TemplateError(f"a lone '}}' at position {i} (write }}}} for a literal brace)")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


class JsonTemplate:
    """A JSON value whose strings (at any depth) are templates."""

    __slots__ = ("_compiled", "placeholders")

    def __init__(self, value: Any):
        self._compiled = _compile(value)
        names: set[str] = set()
        _collect(self._compiled, names)
        self.placeholders = frozenset(names)

    def render(self, fields: Mapping[str, str]) -> Any:
        return _render(self._compiled, fields)


def _compile(value: Any) -> Any:
    if isinstance(value, str):
        return Template(value)
    if isinstance(value, dict):
        return {str(k): _compile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # TOML dates and times have no JSON form; say so instead of sending their repr.
    raise TemplateError(f"{value!r}, which has no JSON form (use a string)")


def _collect(value: Any, names: set[str]) -> None:
    if isinstance(value, Template):
        names |= value.placeholders
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, names)
    elif isinstance(value, list):
        for v in value:
            _collect(v, names)


def _render(value: Any, fields: Mapping[str, str]) -> Any:
    if isinstance(value, Template):
        return value.render(fields)
    if isinstance(value, dict):
        return {k: _render(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, fields) for v in value]
    return value
