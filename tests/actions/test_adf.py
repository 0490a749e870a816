"""Plain text to ADF, and account ID forms (runner.adf, runner.accounts)."""

from __future__ import annotations

import pytest

from runner.actions.adf import adf_problem, text_to_adf
from runner.job.accounts import account_id_problem, is_account_id


def test_plain_text_becomes_paragraphs_with_hard_breaks() -> None:
    """Blank lines split paragraphs; single newlines become hardBreak nodes."""
    doc = text_to_adf("Line one\nline two\n\nSecond *para*")
    assert doc == {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Line one"},
                {"type": "hardBreak"},
                {"type": "text", "text": "line two"},
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Second *para*"}]},
        ],
    }


def test_empty_text_gives_an_empty_document() -> None:
    """Whitespace-only text has no paragraphs (callers refuse it: Jira does too)."""
    assert text_to_adf("\n \n")["content"] == []


def test_adf_envelope_is_checked() -> None:
    """An ADF value must be a doc of version 1 with a list of typed nodes."""
    assert adf_problem(text_to_adf("x")) is None
    assert adf_problem({"type": "paragraph"}) == "type = 'paragraph'"
    assert adf_problem({"type": "doc", "version": 2, "content": []}) == "version = 2"
    assert adf_problem({"type": "doc", "version": 1, "content": [1]}) is not None
    assert adf_problem("text") == "'text'"


@pytest.mark.parametrize(
    "value",
    [
        "5b10a2844c20165700ede21g",
        "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
        "5ca1ab1e0123456789abcdef",
        "qm:1a2b3c4d-5e6f:abc_DEF",
    ],
)
def test_account_id_forms_are_accepted(value: str) -> None:
    """The two real forms, the sandbox's synthetic one and the general token form pass."""
    assert is_account_id(value)
    assert account_id_problem(value) is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "an empty value"),
        ("   ", "an empty value"),
        ("ada@example.com", "an e-mail address"),
        ("Ada Admin", "'Ada Admin'"),
        ("-leading", "'-leading'"),
        ("x" * 129, "'xxx"),
    ],
)
def test_account_id_problems_say_what_was_found(value: str, said: str) -> None:
    """Empty values, e-mails and spaces are refused with what was expected and found."""
    problem = account_id_problem(value)
    assert problem is not None
    assert problem.startswith("expected an Atlassian account ID")
    assert said in problem
