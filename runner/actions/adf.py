"""Atlassian Document Format: plain text in, an ADF ``doc`` out.

Jira's v3 API takes rich text (comment bodies, descriptions, worklog comments) only as ADF.
Plain text maps onto it simply: blank lines separate paragraphs, single newlines become hard
breaks, and the text is carried verbatim (no markup is interpreted, so a row can't inject any).
"""

from __future__ import annotations

import re
from typing import Any

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")

# Jira Cloud refuses a rich-text field (comment, description, worklog comment) holding more
# characters than this (its `jira.text.field.character.limit` setting, fixed on Cloud): the row
# check refuses it, before anything is sent, rather than every such item failing with a 400.
TEXT_LIMIT = 32_767


def text_to_adf(text: str) -> dict[str, Any]:
    """An ADF document holding ``text``: one paragraph per blank-line-separated block."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    content: list[dict[str, Any]] = []
    for block in _PARAGRAPH_BREAK.split(text):
        if not block.strip():
            continue
        nodes: list[dict[str, Any]] = []
        for i, line in enumerate(block.split("\n")):
            if i:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


EXPECTED = 'an ADF document (type = "doc", version = 1, content = a list of nodes)'


def adf_problem(value: Any) -> str | None:
    """None if ``value`` has the shape of an ADF document, else a description of what was found.

    Only the envelope is checked (``EXPECTED``); Jira itself judges the nodes' details.
    """
    if not isinstance(value, dict):
        return repr(value)
    if value.get("type") != "doc":
        return f"type = {value.get('type')!r}"
    if value.get("version") != 1:
        return f"version = {value.get('version')!r}"
    content = value.get("content")
    if not isinstance(content, list) or not all(
        isinstance(node, dict) and isinstance(node.get("type"), str) for node in content
    ):
        return "content that is not a list of nodes each with a type"
    return None


def is_empty(doc: dict[str, Any]) -> bool:
    """Whether an ADF document holds no text at all (Jira refuses an empty comment)."""
    return not doc.get("content")


def text_length(node: Any) -> int:
    """The characters of text an ADF document (or node) holds, every ``text`` node counted."""
    if isinstance(node, list):
        return sum(text_length(child) for child in node)
    if not isinstance(node, dict):
        return 0
    text = node.get("text")
    own = len(text) if node.get("type") == "text" and isinstance(text, str) else 0
    return own + text_length(node.get("content"))
