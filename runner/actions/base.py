"""What an action is and what it produces: a ``JiraRequest``, ready to send.

An action is one ``[[actions]]`` entry of a job. ``render(row, item_key)`` fills its templates
from one row and returns the request: method, concrete path, the spec's path template (the
budgets' endpoint key), query, JSON body, whether it may be sent twice, its points cost and the
issue it writes to (the per-issue budget's key). Rendering is pure and cheap, so the same call
checks every row before a run and builds each request during it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Protocol

from runner.jira.client import JiraRequest
from runner.job.sources import Row
from runner.job.templates import (
    JsonTemplate,
    Template,
    TemplateError,
    dot_segment_problem,
    path_segment,
)

# The entity property every create carries, so a create whose outcome is unknown can be found
# (by `issue.property[forge-runner.item].item = "<item key>"`) before it is sent again.
ITEM_PROPERTY_KEY = "forge-runner.item"

# Points (atlassian-facts.md section 3): 1 per request, +1 per core object read (issue,
# project...), +2 per identity object read (user, group, role); writes cost 1.
WRITE_COST = 1
REQUEST_COST = 1
CORE_OBJECT_COST = 1
IDENTITY_OBJECT_COST = 2

API = "/rest/api/3"


class Action(Protocol):
    """One ``[[actions]]`` entry; ``index`` is its position in the job. (Read-only attributes,
    written as properties so frozen dataclasses satisfy the protocol.)"""

    @property
    def index(self) -> int: ...

    @property
    def name(self) -> str: ...  # "comment.add", "request", ...

    @property
    def idempotent(self) -> bool: ...

    @property
    def creates(self) -> str | None: ...  # "comment" | "issue" | "worklog" | None

    def placeholders(self) -> frozenset[str]: ...

    def render(self, row: Row, item_key: str) -> JiraRequest: ...


class Templated:
    """For action dataclasses: ``placeholders`` from their template fields, and ``request``
    built with the action's own ``idempotent``, so neither is written out per action."""

    idempotent: bool

    def placeholders(self) -> frozenset[str]:
        """Every placeholder of every template field (and of templates in tuples or mappings)."""
        names: set[str] = set()
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            parts = value.values() if isinstance(value, Mapping) else (
                value if isinstance(value, tuple) else (value,))
            for part in parts:
                if isinstance(part, Template | JsonTemplate):
                    names |= part.placeholders
        return frozenset(names)

    def request(self, method: str, path: str, template: str, **kw: Any) -> JiraRequest:
        return JiraRequest(method, path, template, idempotent=self.idempotent, **kw)


class RenderError(ValueError):
    """One row's values don't make a valid request for one action parameter."""

    def __init__(self, param: str, problem: str):
        self.param = param
        self.problem = problem
        super().__init__(f"{param}: {problem}")


def item_property(item_key: str) -> dict[str, Any]:
    return {"key": ITEM_PROPERTY_KEY, "value": {"item": item_key}}


def fill(param: str, template: Template, fields: Mapping[str, str], *, nonempty: bool = True
         ) -> str:
    """Render one parameter, naming the parameter in any error."""
    try:
        value = template.render(fields)
    except TemplateError as exc:
        raise RenderError(param, str(exc)) from None
    if nonempty and not value.strip():
        shown = f" ({template.text!r} gave '')" if template.placeholders else ""
        raise RenderError(param, f"expected a value, found an empty one{shown}")
    return value


def fill_segment(param: str, template: Template, fields: Mapping[str, str]) -> tuple[str, str]:
    """A parameter that goes into the URL path: (value, percent-encoded value)."""
    value = fill(param, template, fields)
    problem = dot_segment_problem(value, template)
    if problem:
        raise RenderError(param, problem)
    return value, path_segment(value)


def issue_path(issue: str, suffix: str = "") -> str:
    return f"{API}/issue/{path_segment(issue)}{suffix}"
