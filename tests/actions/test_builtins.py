"""Built-in actions: what each sends, its flags and costs, and that it is valid against Jira's
published OpenAPI spec (runner.actions)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from runner.actions import (
    BUILTINS,
    ITEM_PROPERTY_KEY,
    Action,
    PythonAction,
    RenderError,
    build_action,
)
from runner.actions.raw import KNOWN_TEMPLATES
from runner.actions.transition import find_transition
from runner.config.tables import Table
from runner.errors import ActionError, JobError
from runner.jira.client import JiraRequest
from runner.job.jobfile import Row
from runner.sandbox.testing import require_specs_dir

ADA = "5b10a2844c20165700ede21g"
CY = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
FIELDS = {
    "account_id": ADA, "issue": "MIG-1", "note": "Line one\nline two\n\nSecond paragraph",
    "legacy_id": "LEG-7", "secs": "5400", "when": "2024-05-01T09:30:00.000+0000",
    "summary": "Imported: {braces} & <tags>", "other": CY, "status": "In Progress",
    "label": "migrated", "prop": "legacy data",
}
ROW = Row(0, "LEG-7", ADA, "acme", FIELDS)
ITEM = "LEG-7#0"
SERVER = "https://your-domain.atlassian.net"


def make(table: Mapping[str, Any], columns: frozenset[str] | None = None) -> Action:
    def error(key: str, expected: str, found: str) -> JobError:
        return JobError(key, f"expected {expected}, found {found}")

    action = build_action(0, Table(dict(table), "actions[0]", error), Path("."),
                          columns if columns is not None else frozenset(FIELDS))
    assert not isinstance(action, PythonAction)
    return action


def render(table: Mapping[str, Any], row: Row = ROW) -> JiraRequest:
    return make(table).render(row, ITEM)


# One sample of every built-in (and of raw requests), each parameter exercised at least once.
SAMPLES: dict[str, dict[str, Any]] = {
    "myself": {"type": "myself"},
    "comment.add text": {"type": "comment.add", "issue": "{issue}",
                         "body": "By {legacy_id}: {note}"},
    "comment.add adf": {"type": "comment.add", "issue": "{issue}", "adf": {
        "type": "doc", "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "{note}"}]}]}},
    "issue.create": {"type": "issue.create", "project": "MIG", "issuetype": "Task",
                     "summary": "{summary}", "description": "{note}",
                     "fields": {"labels": ["{label}"], "customfield_10010": "{legacy_id}"}},
    "issue.create by id": {"type": "issue.create", "project": "10000", "issuetype": "10001",
                           "summary": "{summary}"},
    "issue.edit": {"type": "issue.edit", "issue": "{issue}", "notify_users": False,
                   "fields": {"summary": "{summary}", "labels": ["{label}"]}},
    "issue.transition by id": {"type": "issue.transition", "issue": "{issue}",
                               "transition_id": "21", "fields": {"resolution": {"name": "Done"}}},
    "issue.assign": {"type": "issue.assign", "issue": "{issue}"},
    "issue.assign other": {"type": "issue.assign", "issue": "{issue}", "account_id": "{other}"},
    "issue.watch": {"type": "issue.watch", "issue": "{issue}"},
    "issue.property.set": {"type": "issue.property.set", "issue": "{issue}", "key": "{prop}",
                           "value": {"id": "{legacy_id}", "n": 3, "tags": ["{label}"]}},
    "user.property.set": {"type": "user.property.set", "key": "migrated",
                          "value": {"from": "{legacy_id}"}},
    "worklog.add": {"type": "worklog.add", "issue": "{issue}", "time_spent_seconds": "{secs}",
                    "started": "{when}", "comment": "{note}"},
    "worklog.add plain": {"type": "worklog.add", "issue": "{issue}", "time_spent_seconds": 60,
                          "started": "2024-05-01"},
    "request put": {"type": "request", "method": "PUT",
                    "path": "/rest/api/3/issue/{issue}/properties/x", "json": {"a": "{label}"}},
    "request create": {"type": "request", "method": "POST", "idempotent": False,
                       "path": "/rest/api/3/issue/{issue}/comment",
                       "json": {"body": {"type": "doc", "version": 1, "content": []}}},
    "request get": {"type": "request", "method": "GET", "path": "/rest/api/3/search/jql",
                    "query": {"jql": "key = {issue}", "maxResults": 5}},
}


@pytest.fixture(scope="module")
def openapi() -> Any:
    """Jira's published spec, for validating requests (skips without it, fails under CI)."""
    from openapi_core import Config as OpenAPIConfig
    from openapi_core import OpenAPI

    specs = require_specs_dir()
    spec = json.loads((specs / "jira-platform-openapi.json").read_text())
    # The published spec has a known quirk that fails strict spec validation; requests are
    # still validated against it.
    return OpenAPI.from_dict(spec, config=OpenAPIConfig(spec_validator_cls=None))


def validate(openapi: Any, request: JiraRequest) -> None:
    from openapi_core.testing import MockRequest

    body = None if request.json is None else json.dumps(request.json).encode()
    mock = MockRequest(SERVER, request.method, request.path, args=dict(request.query), data=body)
    with warnings.catch_warnings():
        # openapi-core warns about the spec's OAuth2 security scheme it can't check; harmless.
        warnings.filterwarnings("ignore", message="Unsupported scheme type", category=UserWarning)
        openapi.validate_request(mock)


def every_request(name: str) -> Iterator[JiraRequest]:
    """The request of a sample, and for a transition by name, both of its requests."""
    request = render(SAMPLES[name])
    if request.resolve is not None:
        yield request.resolve.request
        yield request.resolve.complete({"transitions": [{"id": "21", "name": "In Progress"}]})
    else:
        yield request


SAMPLES["issue.transition by name"] = {"type": "issue.transition", "issue": "{issue}",
                                       "transition": "{status}"}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_builtin_is_valid_against_the_spec(openapi: Any, name: str) -> None:
    """Each rendered request (path, query, body) validates against Jira's OpenAPI spec."""
    for request in every_request(name):
        validate(openapi, request)


def test_samples_cover_every_builtin() -> None:
    """No built-in escapes the spec test."""
    assert {s["type"] for s in SAMPLES.values()} == set(BUILTINS)


def test_the_validator_does_reject_a_wrong_body(openapi: Any) -> None:
    """The spec check can fail: a string duration is refused."""
    good = render(SAMPLES["worklog.add"])
    bad = JiraRequest(good.method, good.path, good.template,
                      json={**good.json, "timeSpentSeconds": "5400"})
    with pytest.raises(Exception, match="not valid"):
        validate(openapi, bad)


def test_known_raw_templates_are_in_the_spec() -> None:
    """Every endpoint a raw request is matched to exists in the spec under that name."""
    spec = json.loads((require_specs_dir() / "jira-platform-openapi.json").read_text())
    assert set(KNOWN_TEMPLATES) <= set(spec["paths"])


@pytest.mark.parametrize(
    ("name", "method", "template", "idempotent", "creates", "cost", "issue"),
    [
        ("myself", "GET", "/rest/api/3/myself", True, None, 3, None),
        ("comment.add text", "POST", "/rest/api/3/issue/{issueIdOrKey}/comment", False,
         "comment", 1, "MIG-1"),
        ("issue.create", "POST", "/rest/api/3/issue", False, "issue", 1, None),
        ("issue.edit", "PUT", "/rest/api/3/issue/{issueIdOrKey}", True, None, 1, "MIG-1"),
        ("issue.transition by id", "POST", "/rest/api/3/issue/{issueIdOrKey}/transitions", True,
         None, 1, "MIG-1"),
        ("issue.assign", "PUT", "/rest/api/3/issue/{issueIdOrKey}/assignee", True, None, 1,
         "MIG-1"),
        ("issue.watch", "POST", "/rest/api/3/issue/{issueIdOrKey}/watchers", True, None, 1,
         "MIG-1"),
        ("issue.property.set", "PUT",
         "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}", True, None, 1, "MIG-1"),
        ("user.property.set", "PUT", "/rest/api/3/user/properties/{propertyKey}", True, None, 1,
         None),
        ("worklog.add", "POST", "/rest/api/3/issue/{issueIdOrKey}/worklog", False, "worklog", 1,
         "MIG-1"),
        ("request put", "PUT", "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}", True,
         None, 1, "MIG-1"),
        ("request create", "POST", "/rest/api/3/issue/{issueIdOrKey}/comment", False, "comment",
         1, "MIG-1"),
        ("request get", "GET", "/rest/api/3/search/jql", True, None, 2, None),
    ],
)
def test_flags_costs_and_issue(name: str, method: str, template: str, idempotent: bool,
                               creates: str | None, cost: int, issue: str | None) -> None:
    """Each action knows its method, spec template, idempotency, creates, cost and issue."""
    action = make(SAMPLES[name])
    request = action.render(ROW, ITEM)
    assert (request.method, request.template, request.idempotent, request.cost,
            request.issue) == (method, template, idempotent, cost, issue)
    assert (action.idempotent, action.creates) == (idempotent, creates)


@pytest.mark.parametrize("name", ["comment.add text", "issue.create", "worklog.add",
                                  "request create"])
def test_creates_carry_the_item_property(name: str) -> None:
    """A create's body carries forge-runner.item = its item key, so it can be found later."""
    body = render(SAMPLES[name]).json
    assert body["properties"][-1] == {"key": ITEM_PROPERTY_KEY, "value": {"item": ITEM}}


def test_comment_text_becomes_adf() -> None:
    """Plain text is sent as an ADF document."""
    body = render(SAMPLES["comment.add text"]).json["body"]
    assert body["type"] == "doc"
    assert [p["type"] for p in body["content"]] == ["paragraph", "paragraph"]
    assert body["content"][0]["content"][0]["text"] == "By LEG-7: Line one"


def test_issue_create_body() -> None:
    """Project by key, type by name, ADF description, extra fields merged."""
    fields = render(SAMPLES["issue.create"]).json["fields"]
    assert fields["project"] == {"key": "MIG"}
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "Imported: {braces} & <tags>"
    assert fields["labels"] == ["migrated"]
    assert fields["description"]["type"] == "doc"
    numeric = render(SAMPLES["issue.create by id"]).json["fields"]
    assert (numeric["project"], numeric["issuetype"]) == ({"id": "10000"}, {"id": "10001"})


def test_edit_query_and_user_property_account() -> None:
    """notify_users = false becomes notifyUsers=false; a user property targets the row's user."""
    assert render(SAMPLES["issue.edit"]).query == {"notifyUsers": "false"}
    request = render(SAMPLES["user.property.set"])
    assert request.query == {"accountId": ADA}
    assert request.path == "/rest/api/3/user/properties/migrated"


def test_assign_and_watch_bodies() -> None:
    """Assign sends {accountId}; watch sends the account ID as a JSON string."""
    assert render(SAMPLES["issue.assign"]).json == {"accountId": ADA}
    assert render(SAMPLES["issue.assign other"]).json == {"accountId": CY}
    assert render(SAMPLES["issue.watch"]).json == ADA


def test_worklog_body() -> None:
    """Seconds become an integer; started becomes RFC 3339 with milliseconds."""
    body = render(SAMPLES["worklog.add"]).json
    assert body["timeSpentSeconds"] == 5400
    assert body["started"] == "2024-05-01T09:30:00.000+00:00"
    plain = render(SAMPLES["worklog.add plain"]).json
    assert plain["started"] == "2024-05-01T00:00:00.000+00:00"
    assert "comment" not in plain


def test_path_values_are_percent_encoded() -> None:
    """Row values can't add path segments: they are percent-encoded."""
    request = render(SAMPLES["issue.property.set"])
    assert request.path == "/rest/api/3/issue/MIG-1/properties/legacy%20data"
    row = Row(0, "k", ADA, "acme", {**FIELDS, "issue": "MIG-1/../../admin"})
    assert render(SAMPLES["issue.watch"], row).path == (
        "/rest/api/3/issue/MIG-1%2F..%2F..%2Fadmin/watchers")


def test_transition_by_name_resolves_first() -> None:
    """By name: a GET of the transitions is sent first, and its answer picks the ID."""
    request = render(SAMPLES["issue.transition by name"])
    assert request.resolve is not None and request.json is None
    read = request.resolve.request
    assert (read.method, read.path, read.cost, read.issue) == (
        "GET", "/rest/api/3/issue/MIG-1/transitions", 2, None)
    answer = {"transitions": [{"id": "11", "name": "To Do"}, {"id": "21", "name": "In Progress"}]}
    done = request.resolve.complete(answer)
    assert done.json == {"transition": {"id": "21"}}
    assert (done.method, done.issue, done.resolve) == ("POST", "MIG-1", None)


def test_transition_name_matching() -> None:
    """Exact name first, else a unique case-insensitive match; otherwise none."""
    answer = {"transitions": [{"id": "1", "name": "Done"}, {"id": "2", "name": "done"},
                              {"id": "3", "name": "Start"}]}
    assert find_transition(answer, "done") == "2"
    assert find_transition(answer, "start") == "3"
    assert find_transition(answer, "DONE") is None  # two case-insensitive matches
    assert find_transition({"oops": 1}, "Done") is None


def test_transition_name_missing_fails_the_item() -> None:
    """A name the issue does not offer is an ActionError naming the issue and the name."""
    request = render(SAMPLES["issue.transition by name"])
    assert request.resolve is not None
    with pytest.raises(ActionError, match="MIG-1 offers no transition named 'In Progress'"):
        request.resolve.complete({"transitions": [{"id": "31", "name": "Done"}]})


@pytest.mark.parametrize(
    ("sample", "change", "param", "said"),
    [
        ("issue.assign other", {"other": "cy@example.com"}, "account_id", "an e-mail address"),
        ("worklog.add", {"when": "yesterday"}, "started", "an ISO 8601 time"),
        ("worklog.add", {"secs": "0"}, "time_spent_seconds", "an integer >= 1, found 0"),
        ("comment.add text", {"note": " ", "legacy_id": ""}, "body", None),
        ("issue.watch", {"issue": ""}, "issue", "found an empty one"),
    ],
)
def test_bad_row_values_are_render_errors(sample: str, change: dict[str, str], param: str,
                                          said: str | None) -> None:
    """A row value that can't make a valid request names the parameter and what was wrong."""
    row = Row(0, "k", ADA, "acme", {**FIELDS, **change})
    if sample == "comment.add text":
        table = {**SAMPLES[sample], "body": "{legacy_id}{note}"}
    else:
        table = SAMPLES[sample]
    with pytest.raises(RenderError) as info:
        render(table, row)
    assert info.value.param == param
    if said:
        assert said in info.value.problem


@pytest.mark.parametrize(
    ("table", "where", "said"),
    [
        ({"type": "comment.add", "issue": "{issue}", "body": "x", "adf": {}}, "actions[0].body",
         "found both"),
        ({"type": "comment.add", "issue": "{issue}", "adf": {"type": "paragraph"}},
         "actions[0].adf", "found type = 'paragraph'"),
        ({"type": "issue.transition", "issue": "{issue}"}, "actions[0].transition_id",
         "found neither"),
        ({"type": "issue.edit", "issue": "{issue}", "fields": {}}, "actions[0].fields",
         "a table (not empty)"),
        ({"type": "request", "method": "PATCH", "path": "/x"}, "actions[0].method",
         "GET, POST, PUT or DELETE"),
        ({"type": "request", "method": "GET", "path": "rest/api/3/myself"}, "actions[0].path",
         "starting with /"),
        ({"type": "request", "method": "GET", "path": "/rest/api/3/search/jql?jql=x"},
         "actions[0].path", "query parameters go in query"),
        ({"type": "request", "method": "GET", "path": "/rest/api/3/myself", "json": {}},
         "actions[0].json", "no body on a GET"),
        ({"type": "request", "method": "POST", "path": "/rest/api/3/issue",
          "idempotent": False}, "actions[0].json", "a table (the issue to create)"),
        ({"type": "comment.add", "issue": "{issue.key}", "body": "x"}, "actions[0].issue",
         "not a column name"),
        ({"type": "request", "method": "GET", "path": "/rest/api/3/myself",
          "query": {"a": "{nope}"}}, "actions[0].query.a", "{nope}"),
        ({"type": "myself", "python": "x:y"}, "actions[0].type", "either type or python"),
        ({"python": "not a ref"}, "actions[0].python", "package.module:function"),
    ],
)
def test_bad_action_tables_name_the_key(table: dict[str, Any], where: str, said: str) -> None:
    """A wrong parameter is reported at actions[i].param with what was expected and found."""
    with pytest.raises(JobError) as info:
        make(table)
    assert info.value.where == where
    assert said in info.value.problem


def test_raw_request_template_inference() -> None:
    """A raw path finds its spec template; literal segments beat parameters; else kept as is."""
    def template(path: str, method: str = "PUT") -> tuple[str, str | None]:
        r = render({"type": "request", "method": method, "path": path, "json": {}})
        return r.template, r.issue

    assert template("/rest/api/3/issue/{issue}/worklog/move", "POST") == (
        "/rest/api/3/issue/{issueIdOrKey}/worklog/move", "MIG-1")
    assert template("/rest/api/3/issue/{issue}/worklog/{legacy_id}") == (
        "/rest/api/3/issue/{issueIdOrKey}/worklog/{id}", "MIG-1")
    assert template("/rest/api/3/issue/MIG-9") == ("/rest/api/3/issue/{issueIdOrKey}", "MIG-9")
    assert template("/rest/api/3/issue/{issue}/properties/{prop}") == (
        "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}", "MIG-1")
    assert template("/rest/api/3/dashboard/{legacy_id}") == (
        "/rest/api/3/dashboard/{legacy_id}", None)
    explicit = render({"type": "request", "method": "DELETE", "cost": 4,
                       "path": "/rest/api/3/dashboard/{legacy_id}",
                       "template": "/rest/api/3/dashboard/{id}", "issue": "{issue}"})
    assert (explicit.template, explicit.issue, explicit.cost, explicit.path) == (
        "/rest/api/3/dashboard/{id}", "MIG-1", 4, "/rest/api/3/dashboard/LEG-7")


def test_raw_get_has_no_issue_and_templated_query() -> None:
    """A raw GET writes nothing (no per-issue key); query values are templates."""
    request = render(SAMPLES["request get"])
    assert request.query == {"jql": "key = MIG-1", "maxResults": "5"}
    assert request.issue is None and request.json is None


def test_raw_post_is_not_idempotent_by_default() -> None:
    """POSTs are assumed to create unless declared idempotent; other methods are idempotent."""
    post = make({"type": "request", "method": "POST", "path": "/rest/api/3/issue/{issue}/notify",
                 "json": {"subject": "x"}})
    assert (post.idempotent, post.creates) == (False, None)
    assert make({"type": "request", "method": "DELETE",
                 "path": "/rest/api/3/issue/{issue}/watchers"}).idempotent


def test_placeholders_are_listed_per_action() -> None:
    """placeholders() names every column an action reads."""
    assert make(SAMPLES["issue.create"]).placeholders() == {"summary", "note", "label",
                                                           "legacy_id"}
    assert make(SAMPLES["issue.assign"]).placeholders() == {"issue", "account_id"}
    assert make(SAMPLES["myself"]).placeholders() == frozenset()


async def test_every_builtin_is_accepted_by_the_sandbox(sandbox: Any) -> None:
    """Sent as a user over loopback, every sample gets a 2xx from the sandbox's Jira, which
    validates against the same spec and keeps state (a transition by name resolves first)."""
    import aiohttp

    from runner.sandbox.testing import ACME_ACTIVE, CLOUD_A

    user = ACME_ACTIVE[0]
    token = sandbox.world.issue_user_token(CLOUD_A, user, "dev", 600)
    row = Row(0, "LEG-7", user, "acme", {**FIELDS, "account_id": user, "other": ACME_ACTIVE[2]})
    base = sandbox.jira_base(CLOUD_A)
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    async with aiohttp.ClientSession() as session:

        async def send(request: JiraRequest) -> tuple[int, Any]:
            async with session.request(request.method, base + request.path,
                                       params=dict(request.query) or None, json=request.json,
                                       headers=headers) as resp:
                body = await resp.json() if resp.content_type == "application/json" else None
                return resp.status, body

        # The sandbox's projects have keys, not numeric IDs: that sample is for the spec only.
        for name in sorted(set(SAMPLES) - {"issue.create by id"}):
            request = make(SAMPLES[name]).render(row, ITEM)
            if request.resolve is not None:
                status, answer = await send(request.resolve.request)
                assert status == 200, (name, answer)
                request = request.resolve.complete(answer)
            status, body = await send(request)
            if not 200 <= status < 300:
                failures.append((name, status, body))
    assert failures == []


def _named_in(value: Any) -> set[str]:
    """The ``{column}`` placeholders written anywhere in a table's strings (and keys)."""
    if isinstance(value, str):
        return set(re.findall(r"\{(\w+)\}", value))
    if isinstance(value, dict):
        return set().union(*(_named_in(k) | _named_in(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(_named_in(v) for v in value))
    return set()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_placeholders_are_every_template_of_the_action(name: str) -> None:
    """Each action's placeholders() are exactly the columns its table's templates name (plus
    the row's own account_id where that is the default), for built-ins and raw requests."""
    written = _named_in({k: v for k, v in SAMPLES[name].items() if k != "type"})
    found = make(SAMPLES[name]).placeholders()
    assert written <= found and found - written <= {"account_id"}
