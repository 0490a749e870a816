"""Endpoints on the issue itself: myself, get/create/edit, transitions, assignee."""

from __future__ import annotations

from typing import Any

from runner.sandbox.jira import fields, render
from runner.sandbox.jira.base import Call, JiraError, Reply, Route, entity_properties
from runner.sandbox.jira.state import Issue


def myself(call: Call) -> Reply:
    call.identity_reads += 1
    site = call.site.site
    name = next((u.name for u in site.users if u.account_id == call.caller), "")
    return Reply(
        200,
        {
            "self": f"{call.base}/user?accountId={call.caller}",
            "accountId": call.caller,
            "accountType": "atlassian",
            "displayName": name or call.caller,
            "active": True,
            "timeZone": "Etc/UTC",
            "locale": "en_US",
        },
    )


def get_issue(call: Call) -> Reply:
    issue = call.issue()
    call.core_reads += 1
    body = render.issue(call, issue, call.csv_param("fields"), call.csv_param("properties"))
    return Reply(200, body)


def create_issue(call: Call) -> Reply:
    body: dict[str, Any] = call.body
    given = dict(body.get("fields") or {})
    project = _project_key(call, given.pop("project", None))
    if not isinstance(given.get("issuetype"), dict) or not (
        given["issuetype"].get("name") or given["issuetype"].get("id")
    ):
        raise JiraError(400, errors={"issuetype": "Specify an issue type"})
    summary = given.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise JiraError(400, errors={"summary": "You must specify a summary of the issue."})
    properties = entity_properties(body)
    # Check every field against a scratch issue first, so a refused create leaves no trace.
    scratch = Issue("0", "X-0", project, summary, "", call.now, call.now)
    fields.apply(call.site, scratch, given, body.get("update"), creating=True)
    issue = call.state.create_issue(call.site, project, scratch.summary, call.caller, call.now)
    issue.assignee = scratch.assignee
    issue.fields.update(scratch.fields)
    issue.properties.update(properties)
    return Reply(201, {"id": issue.id, "key": issue.key, "self": f"{call.base}/issue/{issue.id}"})


def edit_issue(call: Call) -> Reply:
    issue = call.issue()
    body: dict[str, Any] = call.body
    properties = entity_properties(body)
    fields.apply(call.site, issue, body.get("fields"), body.get("update"))
    issue.properties.update(properties)
    issue.updated = call.now
    if call.flag("returnIssue"):
        call.core_reads += 1
        return Reply(200, render.issue(call, issue, None))
    return Reply(204)


def get_transitions(call: Call) -> Reply:
    issue = call.issue()
    call.core_reads += 1
    only = call.query.get("transitionId")
    listed = [
        {
            "id": t.id,
            "name": t.name,
            "to": {"name": t.to, "id": call.site.status_id(t.to)},
            "hasScreen": False,
            "isGlobal": True,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": t.to == issue.status,
        }
        for t in call.site.site.workflow
        if only is None or t.id == only
    ]
    return Reply(200, {"expand": "transitions", "transitions": listed})


def do_transition(call: Call) -> Reply:
    issue = call.issue()
    body: dict[str, Any] = call.body
    if "transition" not in body:
        raise JiraError(400, ("Missing transition.",))
    properties = entity_properties(body)
    _transition(call, issue, body)
    issue.properties.update(properties)
    issue.updated = call.now
    return Reply(204)


def _transition(call: Call, issue: Issue, body: dict[str, Any]) -> None:
    wanted = (body.get("transition") or {}).get("id")
    target = next((t for t in call.site.site.workflow if t.id == wanted), None)
    if target is None:
        raise JiraError(400, (f"Transition id '{wanted}' is not valid for this issue.",))
    fields.apply(call.site, issue, body.get("fields"), body.get("update"))
    issue.status = target.to


def assign(call: Call) -> Reply:
    issue = call.issue()
    account = call.body.get("accountId")
    issue.assignee = fields.assignee_of(call.site, {"accountId": account})
    issue.updated = call.now
    return Reply(204)


def _project_key(call: Call, value: Any) -> str:
    known = call.site.projects()
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and key.upper() in known:
            return key.upper()
    raise JiraError(400, errors={"project": "Specify a valid project ID or key"})


ROUTES = [
    Route("GET", "/myself", myself),
    Route("POST", "/issue", create_issue),
    Route("GET", "/issue/{issueIdOrKey}", get_issue),
    Route("PUT", "/issue/{issueIdOrKey}", edit_issue, issue_write=True),
    Route("GET", "/issue/{issueIdOrKey}/transitions", get_transitions),
    Route("POST", "/issue/{issueIdOrKey}/transitions", do_transition, issue_write=True),
    Route("PUT", "/issue/{issueIdOrKey}/assignee", assign, issue_write=True),
]
