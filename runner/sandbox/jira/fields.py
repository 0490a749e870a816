"""Setting an issue's fields the way create, edit and transition bodies ask: ``fields`` and
``update`` (set/add/remove/edit operations), with Jira's refusals for what can't be set."""

from __future__ import annotations

from typing import Any

from runner.sandbox.jira import adf
from runner.sandbox.jira.base import JiraError
from runner.sandbox.jira.state import Issue, SiteState

# Fields a body may not set: Jira changes these only through their own operations.
_NOT_SETTABLE = {"status", "created", "updated", "reporter", "resolutiondate"}
# Fields whose value must be an ADF document in REST v3.
RICH_TEXT = ("description", "environment")


def check_assignable(site: SiteState, account_id: str) -> None:
    state = site.site.user_state(account_id)
    if state is None:
        raise JiraError(404, errors={"assignee": f"User '{account_id}' does not exist."})
    if state != "active":
        raise JiraError(400, errors={"assignee": f"User '{account_id}' cannot be assigned issues."})


def assignee_of(site: SiteState, value: Any) -> str | None:
    """The account ID an ``assignee`` value names; None unassigns (as does ``"-1"``)."""
    if value is None:
        return None
    account = value.get("accountId") if isinstance(value, dict) else None
    if not isinstance(account, str) and account is not None:
        raise JiraError(400, errors={"assignee": "expected {\"accountId\": ...}"})
    if account is None or account == "-1":
        return None
    check_assignable(site, account)
    return account


def apply(
    site: SiteState,
    issue: Issue,
    fields: dict[str, Any] | None,
    update: dict[str, list[dict[str, Any]]] | None,
    *,
    creating: bool = False,
) -> None:
    """Apply ``fields`` then ``update`` to ``issue``; all checks pass before anything changes."""
    fields = dict(fields or {})
    update = dict(update or {})
    both = set(fields) & set(update)
    if both:
        name = sorted(both)[0]
        raise JiraError(
            400, errors={name: f"Field '{name}' cannot be set both in fields and in update."}
        )
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        changes[name] = _checked(site, name, value, creating)
    for name, operations in update.items():
        current = changes.get(name, _current(issue, name))
        for op in operations:
            current = _operate(name, current, op)
        changes[name] = _checked(site, name, current, creating)
    for name, value in changes.items():
        if name == "summary":
            issue.summary = value
        elif name == "assignee":
            issue.assignee = value
        elif name != "project":
            issue.fields[name] = value


def _current(issue: Issue, name: str) -> Any:
    if name == "summary":
        return issue.summary
    if name == "assignee":
        return {"accountId": issue.assignee} if issue.assignee else None
    return issue.fields.get(name)


def _checked(site: SiteState, name: str, value: Any, creating: bool) -> Any:
    if name in _NOT_SETTABLE or (name == "project" and not creating):
        raise JiraError(
            400,
            errors={
                name: f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                "or unknown."
            },
        )
    if name == "summary":
        if not isinstance(value, str) or not value.strip():
            raise JiraError(400, errors={"summary": "You must specify a summary of the issue."})
        if len(value) > 255:
            raise JiraError(400, errors={"summary": "Summary must be less than 255 characters."})
    elif name == "assignee":
        return assignee_of(site, value)
    elif name in RICH_TEXT and value is not None:
        adf.require_document(value, name)
    return value


def _operate(name: str, current: Any, op: dict[str, Any]) -> Any:
    if "set" in op:
        return op["set"]
    if "edit" in op:
        return op["edit"]
    items = list(current) if isinstance(current, list) else []
    if "add" in op:
        if op["add"] not in items:
            items.append(op["add"])
        return items
    if "remove" in op:
        return [item for item in items if item != op["remove"]]
    raise JiraError(400, errors={name: f"Operation on field '{name}' is not supported."})
