"""Templates: {column} substitution only, escapes, percent-encoding (runner.templates)."""

from __future__ import annotations

import pytest

from runner.job.templates import JsonTemplate, Template, TemplateError, path_segment


def test_placeholders_are_filled_from_the_row() -> None:
    """Each {column} is replaced by the row's value; the rest is kept verbatim."""
    t = Template("Migrated by {author}: {note}")
    assert t.placeholders == {"author", "note"}
    assert t.render({"author": "ada", "note": "done", "other": "x"}) == "Migrated by ada: done"


def test_double_braces_are_literal_braces() -> None:
    """{{ and }} stand for { and }, and are not placeholders."""
    t = Template("{{literal}} {x} }}{{")
    assert t.placeholders == {"x"}
    assert t.render({"x": "1"}) == "{literal} 1 }{"


def test_values_are_not_templates_themselves() -> None:
    """A value containing braces is inserted as is, never evaluated again."""
    assert Template("{a}").render({"a": "{b}", "b": "no"}) == "{b}"


@pytest.mark.parametrize(
    "text",
    ["{a.b}", "{a[0]}", "{a:>5}", "{a!r}", "{}", "{0}", "{ a }", "{__class__.__mro__}x{a.b}"],
)
def test_anything_but_a_column_name_is_rejected(text: str) -> None:
    """No attribute or index access, no format specs or conversions: only {column}."""
    with pytest.raises(TemplateError, match="not a column name"):
        Template(text)


@pytest.mark.parametrize("text", ["{open", "close}", "a } b"])
def test_unbalanced_braces_are_rejected(text: str) -> None:
    """A lone brace is an error that says how to write a literal one."""
    with pytest.raises(TemplateError, match="literal brace"):
        Template(text)


def test_a_missing_column_is_an_error_naming_it() -> None:
    """Rendering with a row that lacks a column names the column."""
    with pytest.raises(TemplateError, match="'issue'"):
        Template("{issue}").render({"other": "x"})


def test_path_values_are_percent_encoded() -> None:
    """A value going into a URL path segment can't add segments or a query."""
    assert path_segment("MIG-1") == "MIG-1"
    assert path_segment("a/b?c#d e%") == "a%2Fb%3Fc%23d%20e%25"
    assert Template("/issue/{k}/x").render({"k": "../admin"}, path_segment) == "/issue/..%2Fadmin/x"


def test_json_templates_fill_strings_at_every_depth() -> None:
    """Strings inside tables and lists are templates; keys and other scalars stay as written."""
    t = JsonTemplate({"id": "{id}", "n": 3, "ok": True, "none": None,
                      "list": ["{a}", {"deep": "x{a}y"}], "{key}": "k"})
    assert t.placeholders == {"id", "a"}
    assert t.render({"id": "7", "a": "A"}) == {
        "id": "7", "n": 3, "ok": True, "none": None, "list": ["A", {"deep": "xAy"}], "{key}": "k",
    }


def test_json_templates_render_fresh_values_each_time() -> None:
    """Mutating one rendering does not leak into the next."""
    t = JsonTemplate({"list": ["{a}"]})
    first = t.render({"a": "1"})
    first["list"].append("changed")
    assert t.render({"a": "2"}) == {"list": ["2"]}


def test_json_templates_reject_values_without_json_form() -> None:
    """A TOML date has no JSON form and is refused at parse time."""
    import datetime

    with pytest.raises(TemplateError, match="no JSON form"):
        JsonTemplate({"when": datetime.date(2024, 1, 1)})
