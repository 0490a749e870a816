"""The project's own Jira request schemas agree with the real OpenAPI spec they were taken from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict, MultiDictProxy

from runner.sandbox.jira.schemas import ENDPOINTS
from runner.sandbox.jira.service import ROUTES
from runner.sandbox.jira.validation import SPEC_FILE, OwnValidator, SpecValidator
from runner.sandbox.testing import ACME_ACTIVE, require_specs_dir

ADA = ACME_ACTIVE[0]
# Keys that document a schema without constraining a request.
_NOTES = {"description", "example", "default", "xml", "title"}


@pytest.fixture(scope="module")
def spec(specs_dir: Path) -> dict[str, Any]:
    with (specs_dir / SPEC_FILE).open("rb") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@pytest.fixture(scope="module")
def specs_dir() -> Path:
    """The real specs, once for the module (skips without them; fails under CI=true)."""
    return require_specs_dir()


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``$ref`` followed and a one-element ``allOf`` merged into its holder."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return resolve(spec, {**spec["components"]["schemas"][name],
                              **{k: v for k, v in schema.items() if k != "$ref"}})
    if len(schema.get("allOf", ())) == 1:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return {**resolve(spec, schema["allOf"][0]), **rest}
    return schema


def types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    found = set(declared) if isinstance(declared, list) else ({declared} if declared else set())
    if schema.get("nullable"):
        found.add("null")
    return found


def compare(spec: dict[str, Any], own: dict[str, Any], theirs: dict[str, Any], where: str
            ) -> list[str]:
    """Differences that could make the two validators disagree on a request."""
    theirs = resolve(spec, theirs)
    if own.get("readOnly") != theirs.get("readOnly"):
        return [f"{where}: readOnly {own.get('readOnly')!r} != {theirs.get('readOnly')!r}"]
    if own.get("readOnly"):
        return []  # refused in a request whatever its shape: nothing below it matters
    problems = []
    if types(own) != types(theirs):
        problems.append(f"{where}: type {types(own)} != {types(theirs)}")
    for key in ("format", "enum", "maxLength"):
        if own.get(key) != theirs.get(key):
            problems.append(f"{where}: {key} {own.get(key)!r} != {theirs.get(key)!r}")
    if (own.get("additionalProperties") is False) != (theirs.get("additionalProperties") is False):
        problems.append(f"{where}: additionalProperties differ")
    own_props, their_props = own.get("properties", {}), theirs.get("properties", {})
    if set(own_props) != set(their_props):
        problems.append(f"{where}: properties {sorted(own_props)} != {sorted(their_props)}")
    for name in set(own_props) & set(their_props):
        problems += compare(spec, own_props[name], their_props[name], f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(own.get(key), dict) and isinstance(theirs.get(key), dict):
            problems += compare(spec, own[key], theirs[key], f"{where}.{key}")
    return problems


def operation(spec: dict[str, Any], route_name: str) -> dict[str, Any]:
    method, path = route_name.split(" ", 1)
    op: dict[str, Any] = spec["paths"][path][method.lower()]
    return op


def test_every_served_route_has_own_schemas() -> None:
    """Each route the sandbox serves has an entry in the own schemas, and no entry is spare."""
    assert {route.name for route in ROUTES} == set(ENDPOINTS)


def test_each_endpoint_exists_in_the_spec(spec: dict[str, Any]) -> None:
    """Every served path exists in the real spec with that method."""
    missing = [
        name for name in ENDPOINTS
        if name.split(" ", 1)[1] not in spec["paths"]
        or name.split(" ", 1)[0].lower() not in spec["paths"][name.split(" ", 1)[1]]
    ]
    assert missing == []


def test_parameters_match_the_spec(spec: dict[str, Any]) -> None:
    """Own path and query parameters are exactly the spec's, with the same schemas."""
    problems = []
    for name, endpoint in ENDPOINTS.items():
        path = name.split(" ", 1)[1]
        declared = [*spec["paths"][path].get("parameters", []),
                    *operation(spec, name).get("parameters", [])]
        for where in ("path", "query"):
            theirs = {p["name"]: p["schema"] for p in declared if p["in"] == where}
            if set(endpoint[where]) != set(theirs):
                problems.append(f"{name} {where}: {sorted(endpoint[where])} != {sorted(theirs)}")
                continue
            for param, schema in endpoint[where].items():
                problems += compare(spec, schema, theirs[param], f"{name} {where} {param}")
    assert problems == []


def test_bodies_match_the_spec(spec: dict[str, Any]) -> None:
    """Own bodies accept only properties the spec has, typed and read-only as the spec says."""
    problems = []
    for name, endpoint in ENDPOINTS.items():
        body = operation(spec, name).get("requestBody")
        if ("body" in endpoint) != (body is not None):
            problems.append(f"{name}: body declared differently")
            continue
        if body is None:
            continue
        if not body.get("required"):
            problems.append(f"{name}: the spec's body is optional, ours is required")
        theirs = body["content"]["application/json"]["schema"]
        problems += compare(spec, endpoint["body"], theirs, f"{name} body")
    assert problems == []


ISSUE = "/rest/api/3/issue/MIG-1"
GOOD = "2026-03-26T09:00:00.000+0000"
# (route, concrete path, query, body, valid?)
CORPUS: list[tuple[str, str, dict[str, str], Any, bool]] = [
    ("GET /rest/api/3/myself", "/rest/api/3/myself", {}, None, True),
    ("GET /rest/api/3/issue/{issueIdOrKey}", ISSUE, {"fields": "summary,status"}, None, True),
    ("GET /rest/api/3/issue/{issueIdOrKey}", ISSUE, {"updateHistory": "true"}, None, True),
    ("GET /rest/api/3/issue/{issueIdOrKey}", ISSUE, {"updateHistory": "maybe"}, None, False),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {},
     {"fields": {"summary": "s", "project": {"key": "MIG"}},
      "properties": [{"key": "k", "value": {"a": 1}}]}, True),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {}, {"fields": []}, False),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {},
     {"properties": [{"key": "k", "value": 1, "extra": 2}]}, False),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {}, {"update": {"labels": {"add": "x"}}},
     False),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {}, {"historyMetadata": {"type": 5}}, False),
    ("POST /rest/api/3/issue", "/rest/api/3/issue", {}, {"anythingElse": 1}, True),
    ("PUT /rest/api/3/issue/{issueIdOrKey}", ISSUE, {"returnIssue": "1"},
     {"update": {"labels": [{"add": "x"}, {"remove": "y"}]}}, True),
    ("PUT /rest/api/3/issue/{issueIdOrKey}", ISSUE, {}, {"update": {"l": [{"push": 1}]}}, False),
    ("PUT /rest/api/3/issue/{issueIdOrKey}", ISSUE, {}, ["not", "an", "object"], False),
    ("GET /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment",
     {"startAt": "0", "maxResults": "50", "orderBy": "-created", "expand": "properties"}, None,
     True),
    ("GET /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment",
     {"maxResults": "1.5"}, None, False),
    ("GET /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment",
     {"maxResults": "99999999999"}, None, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment", {},
     {"body": {"type": "doc", "version": 1, "content": []},
      "visibility": {"type": "role", "value": "Admins", "identifier": None}}, True),
    ("POST /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment", {},
     {"body": {}, "visibility": {"type": "team"}}, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/comment", ISSUE + "/comment", {},
     {"body": {}, "author": {"accountId": ADA}}, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/transitions", ISSUE + "/transitions", {},
     {"transition": {"id": "31", "looped": False}}, True),
    ("POST /rest/api/3/issue/{issueIdOrKey}/transitions", ISSUE + "/transitions", {},
     {"transition": {"id": "31", "name": "Done"}}, False),
    ("PUT /rest/api/3/issue/{issueIdOrKey}/assignee", ISSUE + "/assignee", {},
     {"accountId": ADA}, True),
    ("PUT /rest/api/3/issue/{issueIdOrKey}/assignee", ISSUE + "/assignee", {},
     {"accountId": None}, False),
    ("PUT /rest/api/3/issue/{issueIdOrKey}/assignee", ISSUE + "/assignee", {},
     {"accountId": "x" * 129}, False),
    ("PUT /rest/api/3/issue/{issueIdOrKey}/assignee", ISSUE + "/assignee", {},
     {"accountId": ADA, "displayName": "Ada"}, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/watchers", ISSUE + "/watchers", {}, ADA, True),
    ("POST /rest/api/3/issue/{issueIdOrKey}/watchers", ISSUE + "/watchers", {}, [ADA], False),
    ("PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}", ISSUE + "/properties/p",
     {}, {"any": ["json", 1, None]}, True),
    ("PUT /rest/api/3/user/properties/{propertyKey}", "/rest/api/3/user/properties/p",
     {"accountId": ADA}, 5, True),
    ("GET /rest/api/3/user/properties/{propertyKey}", "/rest/api/3/user/properties/p",
     {"accountId": "x" * 129}, None, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/worklog", ISSUE + "/worklog",
     {"adjustEstimate": "leave"}, {"started": GOOD, "timeSpentSeconds": 60}, True),
    ("POST /rest/api/3/issue/{issueIdOrKey}/worklog", ISSUE + "/worklog", {},
     {"started": "2026-03-26T09:00:00Z", "timeSpent": "1h"}, True),
    ("POST /rest/api/3/issue/{issueIdOrKey}/worklog", ISSUE + "/worklog", {},
     {"started": "2026-02-30T09:00:00.000+0000", "timeSpent": "1h"}, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/worklog", ISSUE + "/worklog", {},
     {"started": GOOD, "timeSpentSeconds": "60"}, False),
    ("POST /rest/api/3/issue/{issueIdOrKey}/worklog", ISSUE + "/worklog",
     {"adjustEstimate": "sometimes"}, {"started": GOOD, "timeSpentSeconds": 60}, False),
    ("GET /rest/api/3/search/jql", "/rest/api/3/search/jql",
     {"jql": "project = MIG", "maxResults": "10", "fields": "summary"}, None, True),
    ("GET /rest/api/3/search/jql", "/rest/api/3/search/jql", {"reconcileIssues": "x"}, None,
     False),
    ("POST /rest/api/3/search/jql", "/rest/api/3/search/jql", {},
     {"jql": "key in (MIG-1)", "fields": ["summary"], "maxResults": 5, "properties": ["p"]},
     True),
    ("POST /rest/api/3/search/jql", "/rest/api/3/search/jql", {}, {"maxResults": "5"}, False),
    ("POST /rest/api/3/search/jql", "/rest/api/3/search/jql", {}, {"startAt": 0}, False),
    ("POST /rest/api/3/search/jql", "/rest/api/3/search/jql", {}, {"reconcileIssues": [1.5]},
     False),
]


def test_corpus_gets_the_same_verdict_from_both_validators(specs_dir: Path) -> None:
    """Valid and invalid sample requests: the own schemas and the real spec agree on each."""
    own, real = OwnValidator(), SpecValidator(specs_dir)
    disagreements = []
    for route, path, query, body, valid in CORPUS:
        raw = b"" if body is None else json.dumps(body).encode()
        content_type = "" if body is None else "application/json"
        args = (route, path, MultiDictProxy(MultiDict(query)), raw, content_type)
        verdicts = (own.check(*args) is None, real.check(*args) is None)
        if verdicts != (valid, valid):
            disagreements.append((route, query, body, "expected", valid, "got", verdicts))
    assert disagreements == []
