"""Endpoints for what people add to an issue: comments, worklogs, watchers."""

from __future__ import annotations

import re
from typing import Any

from runner.sandbox.jira import adf, render
from runner.sandbox.jira.base import Call, JiraError, Reply, Route, entity_properties
from runner.sandbox.jira.state import Comment, Worklog

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([wdhm]?)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhm]?)")
# Jira's defaults: a day is 8 hours, a week 5 days; a bare number is minutes.
_UNIT_S = {"w": 5 * 8 * 3600, "d": 8 * 3600, "h": 3600, "m": 60, "": 60}


def _page(call: Call, default_max: int) -> tuple[int, int]:
    start = max(0, call.int_param("startAt", 0))
    size = call.int_param("maxResults", default_max)
    return start, max(0, min(size, default_max))


def get_comments(call: Call) -> Reply:
    issue = call.issue()
    start, size = _page(call, 100)
    ordered = list(issue.comments)
    if call.query.get("orderBy") == "-created":
        ordered.reverse()
    page = ordered[start : start + size]
    call.core_reads += len(page)
    with_props = render.expands(call, "properties")
    return Reply(
        200,
        {
            "startAt": start,
            "maxResults": size,
            "total": len(issue.comments),
            "comments": [render.comment(call, issue.id, c, with_props) for c in page],
        },
    )


def add_comment(call: Call) -> Reply:
    issue = call.issue()
    body: dict[str, Any] = call.body
    if "body" not in body or body["body"] in (None, ""):
        raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
    adf.require_document(body["body"], "comment")
    comment = Comment(
        id=call.state.new_comment_id(),
        author=call.caller,
        body=body["body"],
        created=call.now,
        updated=call.now,
        visibility=body.get("visibility"),
        properties=entity_properties(body),
    )
    issue.comments.append(comment)
    issue.updated = call.now
    return Reply(201, render.comment(call, issue.id, comment, render.expands(call, "properties")))


def get_worklogs(call: Call) -> Reply:
    issue = call.issue()
    start, size = _page(call, 5000)
    page = issue.worklogs[start : start + size]
    call.core_reads += len(page)
    with_props = render.expands(call, "properties")
    return Reply(
        200,
        {
            "startAt": start,
            "maxResults": size,
            "total": len(issue.worklogs),
            "worklogs": [render.worklog(call, w, with_props) for w in page],
        },
    )


def add_worklog(call: Call) -> Reply:
    issue = call.issue()
    body: dict[str, Any] = call.body
    if not body.get("started"):
        raise JiraError(400, errors={"started": "Started date is required."})
    has_text, has_seconds = "timeSpent" in body, "timeSpentSeconds" in body
    if has_text == has_seconds:
        raise JiraError(
            400, errors={"timeLogged": "Give exactly one of timeSpent and timeSpentSeconds."}
        )
    seconds = body["timeSpentSeconds"] if has_seconds else parse_duration(body["timeSpent"])
    if seconds <= 0:
        raise JiraError(400, errors={"timeLogged": "Time spent must be more than zero."})
    if body.get("comment") is not None:
        adf.require_document(body["comment"], "comment")
    worklog = Worklog(
        id=call.state.new_worklog_id(),
        issue_id=issue.id,
        author=call.caller,
        started=body["started"],
        time_spent_seconds=seconds,
        created=call.now,
        updated=call.now,
        comment=body.get("comment"),
        visibility=body.get("visibility"),
        properties=entity_properties(body),
    )
    issue.worklogs.append(worklog)
    issue.updated = call.now
    return Reply(201, render.worklog(call, worklog, render.expands(call, "properties")))


def parse_duration(text: str) -> int:
    """``"1d 2h 30m"`` (or a bare number of minutes) in seconds; 400 if Jira wouldn't read it."""
    if not _DURATION.match(text):
        raise JiraError(400, errors={"timeLogged": "Invalid time duration entered."})
    total = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(text))
    return int(total)


def get_watchers(call: Call) -> Reply:
    issue = call.issue()
    call.identity_reads += len(issue.watchers)
    return Reply(
        200,
        {
            "self": f"{call.base}/issue/{issue.key}/watchers",
            "isWatching": call.caller in issue.watchers,
            "watchCount": len(issue.watchers),
            "watchers": [render.user(call.site, a) for a in issue.watchers],
        },
    )


def add_watcher(call: Call) -> Reply:
    issue = call.issue()
    account: str = call.body
    state = call.site.site.user_state(account)
    if state is None:
        raise JiraError(404, (f"The user with account ID '{account}' does not exist.",))
    if state != "active":
        raise JiraError(400, (f"The user '{account}' cannot watch this issue.",))
    if account not in issue.watchers:
        issue.watchers.append(account)
    return Reply(204)


ROUTES = [
    Route("GET", "/issue/{issueIdOrKey}/comment", get_comments),
    Route("POST", "/issue/{issueIdOrKey}/comment", add_comment, issue_write=True),
    Route("GET", "/issue/{issueIdOrKey}/worklog", get_worklogs),
    Route("POST", "/issue/{issueIdOrKey}/worklog", add_worklog, issue_write=True),
    Route("GET", "/issue/{issueIdOrKey}/watchers", get_watchers),
    Route("POST", "/issue/{issueIdOrKey}/watchers", add_watcher, issue_write=True),
]
