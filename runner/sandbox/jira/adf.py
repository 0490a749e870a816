"""Atlassian Document Format, as far as REST v3 insists on it.

The OpenAPI spec types rich-text bodies as "anything", but v3 refuses plain strings there (they
are a v2 habit), so the sandbox refuses them too: a runner that passes here passes on Jira.
"""

from __future__ import annotations

from typing import Any

from runner.sandbox.jira.base import JiraError


def is_document(value: Any) -> bool:
    """A top-level ADF node: ``{"type": "doc", "version": 1, "content": [nodes]}``."""
    if not isinstance(value, dict):
        return False
    content = value.get("content")
    return (
        value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(content, list)
        and all(isinstance(node, dict) and isinstance(node.get("type"), str) for node in content)
    )


def require_document(value: Any, field: str) -> None:
    """400 in Jira's words unless ``value`` is an ADF document."""
    if not is_document(value):
        raise JiraError(
            400,
            errors={
                field: "Operation value must be an Atlassian Document "
                "(see the Atlassian Document Format)"
            },
        )


def text(value: str) -> dict[str, Any]:
    """A one-paragraph document holding ``value``."""
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": value}]}],
    }
