"""The JSON shapes Jira answers with: users, issues, comments, worklogs, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.sandbox.jira.base import Call
from runner.sandbox.jira.state import Comment, Issue, SiteState, Worklog

# Fields an issue always has; everything else comes from Issue.fields.
STANDARD_FIELDS = (
    "summary", "status", "project", "assignee", "reporter", "issuetype", "created", "updated"
)


def jira_time(at: float) -> str:
    """Jira's timestamp form: ``2026-03-26T16:00:00.000+0000``."""
    when = datetime.fromtimestamp(at, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def user(site: SiteState, account_id: str) -> dict[str, Any]:
    name = next((u.name for u in site.site.users if u.account_id == account_id), "")
    state = site.site.user_state(account_id)
    return {
        "accountId": account_id,
        "accountType": "atlassian",
        "displayName": name or account_id,
        "active": state in ("active", "no_access"),
    }


def issue(call: Call, it: Issue, wanted: list[str] | None, properties: list[str] | None = None
          ) -> dict[str, Any]:
    """An issue with the ``fields`` asked for (Jira's syntax: ``*all``, ``-x``, ``id``, names)."""
    out: dict[str, Any] = {"id": it.id, "key": it.key, "self": f"{call.base}/issue/{it.id}"}
    names = _selected(it, wanted)
    if names:
        every = all_fields(call.site, it)
        out["fields"] = {n: every.get(n) for n in names}
    if properties:
        out["properties"] = {k: it.properties[k] for k in properties if k in it.properties}
    return out


def all_fields(site: SiteState, it: Issue) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "summary": it.summary,
        "status": {"name": it.status, "id": site.status_id(it.status)},
        "project": {"key": it.project},
        "assignee": user(site, it.assignee) if it.assignee else None,
        "reporter": user(site, it.reporter) if it.reporter else None,
        "issuetype": it.fields.get("issuetype", {"name": "Task"}),
        "created": jira_time(it.created),
        "updated": jira_time(it.updated),
    }
    for name, value in it.fields.items():
        fields.setdefault(name, value)
    return fields


def _selected(it: Issue, wanted: list[str] | None) -> list[str]:
    every = [*STANDARD_FIELDS, *(n for n in it.fields if n not in STANDARD_FIELDS)]
    if wanted is None:
        return every
    chosen: list[str] = []
    for name in wanted:
        if name in ("*all", "*navigable"):
            chosen.extend(every)
        elif name in every and not name.startswith("-"):
            chosen.append(name)
    excluded = {n[1:] for n in wanted if n.startswith("-")}
    return [n for n in dict.fromkeys(chosen) if n not in excluded]


def comment(call: Call, issue_id: str, c: Comment, with_properties: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "self": f"{call.base}/issue/{issue_id}/comment/{c.id}",
        "author": user(call.site, c.author),
        "updateAuthor": user(call.site, c.author),
        "body": c.body,
        "created": jira_time(c.created),
        "updated": jira_time(c.updated),
        "jsdPublic": True,
    }
    if c.visibility is not None:
        out["visibility"] = c.visibility
    if with_properties:
        out["properties"] = [{"key": k, "value": v} for k, v in c.properties.items()]
    return out


def worklog(call: Call, w: Worklog, with_properties: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": w.id,
        "issueId": w.issue_id,
        "self": f"{call.base}/issue/{w.issue_id}/worklog/{w.id}",
        "author": user(call.site, w.author),
        "updateAuthor": user(call.site, w.author),
        "started": w.started,
        "timeSpent": format_duration(w.time_spent_seconds),
        "timeSpentSeconds": w.time_spent_seconds,
        "created": jira_time(w.created),
        "updated": jira_time(w.updated),
    }
    if w.comment is not None:
        out["comment"] = w.comment
    if w.visibility is not None:
        out["visibility"] = w.visibility
    if with_properties:
        out["properties"] = [{"key": k, "value": v} for k, v in w.properties.items()]
    return out


def format_duration(seconds: int) -> str:
    """Jira's short duration form with 8-hour days: ``1d 2h 30m``."""
    parts = []
    for unit, size in (("d", 8 * 3600), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0m"


def expands(call: Call, name: str) -> bool:
    """Whether ``expand`` (comma-separated) asks for ``name``."""
    return name in (call.csv_param("expand") or [])
