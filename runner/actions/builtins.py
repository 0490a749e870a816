"""The built-in actions: each knows its method, path, body, idempotency, cost and issue.

Every body they build validates against Jira's published OpenAPI spec (tests check each one).
Creates (``comment.add``, ``issue.create``, ``worklog.add``) are not idempotent: sent twice they
make two entities. Each carries the ``forge-runner.item`` entity property in its ``properties``,
so a create whose outcome is unknown can be looked for before it is sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.actions.base import (
    API,
    IDENTITY_OBJECT_COST,
    REQUEST_COST,
    WRITE_COST,
    RenderError,
    Templated,
    fill,
    fill_segment,
    issue_path,
    item_property,
)
from runner.actions.params import (
    Params,
    adf_param,
    int_param,
    optional_adf_param,
    started_param,
)
from runner.jira.client import JiraRequest
from runner.job.accounts import account_id_problem
from runner.job.templates import JsonTemplate, Template

if TYPE_CHECKING:
    from runner.job.sources import Row

ISSUE = f"{API}/issue/{{issueIdOrKey}}"


def _account(param: str, template: Template, row: Row) -> str:
    value = fill(param, template, row.fields)
    problem = account_id_problem(value)
    if problem:
        raise RenderError(param, problem)
    return value


@dataclass(frozen=True)
class Myself(Templated):
    """``GET /rest/api/3/myself``: who the token acts as. Reads a user: 1 + 2 points."""

    index: int
    name: str = "myself"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> Myself:
        return cls(index)

    def render(self, row: Row, item_key: str) -> JiraRequest:
        return self.request("GET", f"{API}/myself", f"{API}/myself",
                            cost=REQUEST_COST + IDENTITY_OBJECT_COST)


@dataclass(frozen=True)
class CommentAdd(Templated):
    """``POST .../issue/{issue}/comment`` with ``body`` (plain text -> ADF) or ``adf``."""

    index: int
    issue: Template
    body: Template | JsonTemplate
    name: str = "comment.add"
    idempotent: bool = False
    creates: str | None = "comment"

    @classmethod
    def parse(cls, index: int, p: Params) -> CommentAdd:
        return cls(index, p.template("issue"), adf_param(p, "body", "adf"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        body = {"body": Params.render_adf("body", self.body, row.fields),
                "properties": [item_property(item_key)]}
        return self.request("POST", issue_path(issue, "/comment"), f"{ISSUE}/comment",
                            json=body, cost=WRITE_COST, issue=issue)


def _ref(value: str, named: str) -> dict[str, str]:
    """Projects and issue types are referred to by ID when numeric, else by key or name."""
    return {"id": value} if value.isdigit() else {named: value}


@dataclass(frozen=True)
class IssueCreate(Templated):
    """``POST /rest/api/3/issue``: project, issuetype, summary, description, extra fields."""

    index: int
    project: Template
    issuetype: Template
    summary: Template
    description: Template | JsonTemplate | None
    fields: JsonTemplate | None
    name: str = "issue.create"
    idempotent: bool = False
    creates: str | None = "issue"

    @classmethod
    def parse(cls, index: int, p: Params) -> IssueCreate:
        return cls(
            index,
            p.template("project"),
            p.template("issuetype"),
            p.template("summary"),
            optional_adf_param(p, "description", "description_adf"),
            p.json_table("fields", required=False),
        )

    def render(self, row: Row, item_key: str) -> JiraRequest:
        f = row.fields
        fields: dict[str, Any] = dict(self.fields.render(f)) if self.fields else {}
        fields["project"] = _ref(fill("project", self.project, f), "key")
        fields["issuetype"] = _ref(fill("issuetype", self.issuetype, f), "name")
        fields["summary"] = fill("summary", self.summary, f)
        if self.description is not None:
            fields["description"] = Params.render_adf("description", self.description, f)
        body = {"fields": fields, "properties": [item_property(item_key)]}
        return self.request("POST", f"{API}/issue", f"{API}/issue", json=body,
                            cost=WRITE_COST)


@dataclass(frozen=True)
class IssueEdit(Templated):
    """``PUT .../issue/{issue}`` with ``fields``; ``notify_users = false`` sends no mail."""

    index: int
    issue: Template
    fields: JsonTemplate
    notify_users: bool
    name: str = "issue.edit"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> IssueEdit:
        fields = p.json_table("fields", required=True)
        assert fields is not None  # required
        return cls(index, p.template("issue"), fields, p.t.boolean("notify_users", True))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        query = {} if self.notify_users else {"notifyUsers": "false"}
        return self.request("PUT", issue_path(issue), ISSUE, query=query,
                            json={"fields": self.fields.render(row.fields)}, cost=WRITE_COST,
                            issue=issue)


@dataclass(frozen=True)
class IssueAssign(Templated):
    """``PUT .../issue/{issue}/assignee``; ``account_id`` defaults to the row's own user."""

    index: int
    issue: Template
    account_id: Template
    name: str = "issue.assign"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> IssueAssign:
        return cls(index, p.template("issue"), p.template("account_id", "{account_id}"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        account = _account("account_id", self.account_id, row)
        return self.request("PUT", issue_path(issue, "/assignee"), f"{ISSUE}/assignee",
                            json={"accountId": account}, cost=WRITE_COST, issue=issue)


@dataclass(frozen=True)
class IssueWatch(Templated):
    """``POST .../issue/{issue}/watchers``; the body is the account ID as a JSON string.
    Adding a watcher who already watches changes nothing, so it is idempotent."""

    index: int
    issue: Template
    account_id: Template
    name: str = "issue.watch"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> IssueWatch:
        return cls(index, p.template("issue"), p.template("account_id", "{account_id}"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        account = _account("account_id", self.account_id, row)
        return self.request("POST", issue_path(issue, "/watchers"), f"{ISSUE}/watchers",
                            json=account, cost=WRITE_COST, issue=issue)


@dataclass(frozen=True)
class IssuePropertySet(Templated):
    """``PUT .../issue/{issue}/properties/{key}`` with ``value`` (any JSON, templated)."""

    index: int
    issue: Template
    key: Template
    value: JsonTemplate
    name: str = "issue.property.set"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> IssuePropertySet:
        return cls(index, p.template("issue"), p.template("key"), p.json_value("value"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        _, key = fill_segment("key", self.key, row.fields)
        return self.request("PUT", issue_path(issue, f"/properties/{key}"),
                            f"{ISSUE}/properties/{{propertyKey}}",
                            json=self.value.render(row.fields), cost=WRITE_COST, issue=issue)


@dataclass(frozen=True)
class UserPropertySet(Templated):
    """``PUT /rest/api/3/user/properties/{key}?accountId=``; the row's own user by default."""

    index: int
    key: Template
    value: JsonTemplate
    account_id: Template
    name: str = "user.property.set"
    idempotent: bool = True
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> UserPropertySet:
        return cls(index, p.template("key"), p.json_value("value"),
                   p.template("account_id", "{account_id}"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        _, key = fill_segment("key", self.key, row.fields)
        account = _account("account_id", self.account_id, row)
        return self.request("PUT", f"{API}/user/properties/{key}",
                            f"{API}/user/properties/{{propertyKey}}", query={"accountId": account},
                            json=self.value.render(row.fields), cost=WRITE_COST)


@dataclass(frozen=True)
class WorklogAdd(Templated):
    """``POST .../issue/{issue}/worklog``: time_spent_seconds, started, optional comment."""

    index: int
    issue: Template
    seconds: Template
    started: Template
    comment: Template | JsonTemplate | None
    name: str = "worklog.add"
    idempotent: bool = False
    creates: str | None = "worklog"

    @classmethod
    def parse(cls, index: int, p: Params) -> WorklogAdd:
        return cls(index, p.template("issue"), p.template_or_int("time_spent_seconds"),
                   p.template("started"), optional_adf_param(p, "comment", "comment_adf"))

    def render(self, row: Row, item_key: str) -> JiraRequest:
        f = row.fields
        issue, _ = fill_segment("issue", self.issue, f)
        body: dict[str, Any] = {
            "timeSpentSeconds": int_param("time_spent_seconds", self.seconds, f, minimum=1),
            "started": started_param("started", self.started, f),
            "properties": [item_property(item_key)],
        }
        if self.comment is not None:
            body["comment"] = Params.render_adf("comment", self.comment, f)
        return self.request("POST", issue_path(issue, "/worklog"), f"{ISSUE}/worklog",
                            json=body, cost=WRITE_COST, issue=issue)

