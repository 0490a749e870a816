"""The sandbox's Jira endpoints over real HTTP: each write is read back by GET and from state.

Every test runs twice: validating with the project's own schemas and with the real spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import SandboxConfig
from runner.sandbox.jira import JiraState
from runner.sandbox.jira.testing import JiraClient, adf, user_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    CLOUD_A,
    UNKNOWN_ACCOUNT,
    require_specs_dir,
)

# The type of conftest's start_sandbox fixture (conftest is pytest's to load, not to import).
StartSandbox = Callable[..., AbstractAsyncContextManager[RunningSandbox]]

ADA, BO = ACME_ACTIVE[0], ACME_ACTIVE[1]


@pytest.fixture(params=["own-schemas", "real-spec"])
async def sandbox(
    request: pytest.FixtureRequest, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> AsyncIterator[RunningSandbox]:
    """The default world, validating with the project's schemas, then with the real spec."""
    config = sandbox_config
    if request.param == "real-spec":
        config = dataclasses.replace(sandbox_config, spec_dir=require_specs_dir())
    async with start_sandbox(config) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def jira(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> JiraClient:
    """Acme's Jira, called as ADA."""
    return JiraClient(http, sandbox.jira_base(CLOUD_A), user_token(sandbox.world, CLOUD_A, ADA))


def state(sandbox: RunningSandbox) -> JiraState:
    jira_state: JiraState = sandbox.world.parts["jira"]
    return jira_state


async def test_myself_answers_as_the_tokens_user(jira: JiraClient) -> None:
    """GET myself names the account the token was minted for."""
    answer = await jira.get("/myself")
    assert answer.status == 200
    assert answer.body["accountId"] == ADA
    assert answer.body["displayName"] == "Active 1"


async def test_get_issue_by_key_and_by_id(jira: JiraClient) -> None:
    """A seeded issue is found by key and by ID, with the fields asked for only."""
    by_key = await jira.get("/issue/MIG-1", params={"fields": "summary,status"})
    assert by_key.status == 200
    assert by_key.body["key"] == "MIG-1"
    assert by_key.body["fields"] == {
        "summary": "Migrated issue 1",
        "status": {"name": "To Do", "id": "1"},
    }
    by_id = await jira.get(f"/issue/{by_key.body['id']}")
    assert by_id.body["key"] == "MIG-1"
    assert by_id.body["fields"]["project"] == {"key": "MIG"}
    missing = await jira.get("/issue/MIG-999")
    assert missing.status == 404
    assert missing.body["errorMessages"]


async def test_create_issue_continues_keys_and_keeps_properties(
    jira: JiraClient, sandbox: RunningSandbox
) -> None:
    """POST issue answers 201 {id, key, self}, numbered after the seeded issues, with properties."""
    answer = await jira.post(
        "/issue",
        json={
            "fields": {
                "project": {"key": "MIG"},
                "summary": "Brand new",
                "issuetype": {"name": "Task"},
                "description": adf("Made by the runner"),
                "labels": ["migrated"],
            },
            "properties": [{"key": "migration", "value": {"source": "row-7"}}],
        },
    )
    assert answer.status == 201
    assert answer.body["key"] == "MIG-6"
    assert set(answer.body) == {"id", "key", "self"}
    assert answer.body["self"].endswith(f"/rest/api/3/issue/{answer.body['id']}")
    read = await jira.get("/issue/MIG-6", params={"properties": "migration"})
    assert read.body["fields"]["summary"] == "Brand new"
    assert read.body["fields"]["labels"] == ["migrated"]
    assert read.body["fields"]["reporter"]["accountId"] == ADA
    assert read.body["properties"] == {"migration": {"source": "row-7"}}
    issue = state(sandbox).issue(CLOUD_A, "MIG-6")
    assert issue is not None and issue.properties == {"migration": {"source": "row-7"}}


async def test_create_issue_refusals(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """An unknown project, no issue type, no summary or a plain-text description is a 400."""
    base = {"project": {"key": "MIG"}, "summary": "s", "issuetype": {"name": "Task"}}
    cases = [
        ({**base, "project": {"key": "NOPE"}}, "project"),
        ({k: v for k, v in base.items() if k != "issuetype"}, "issuetype"),
        ({**base, "summary": " "}, "summary"),
        ({**base, "description": "plain text"}, "description"),
    ]
    for fields, key in cases:
        answer = await jira.post("/issue", json={"fields": fields})
        assert answer.status == 400, fields
        assert key in answer.body["errors"]
    assert len(state(sandbox).site(CLOUD_A).issues) == 5


async def test_edit_issue_fields_update_and_properties(
    jira: JiraClient, sandbox: RunningSandbox
) -> None:
    """PUT issue sets fields, applies update operations and properties; 204; GET shows them."""
    answer = await jira.put(
        "/issue/MIG-2",
        json={
            "fields": {"summary": "Renamed"},
            "update": {"labels": [{"add": "a"}, {"add": "b"}, {"remove": "a"}]},
            "properties": [{"key": "synced", "value": True}],
        },
    )
    assert answer.status == 204
    assert answer.body is None
    read = await jira.get("/issue/MIG-2")
    assert read.body["fields"]["summary"] == "Renamed"
    assert read.body["fields"]["labels"] == ["b"]
    issue = state(sandbox).issue(CLOUD_A, "MIG-2")
    assert issue is not None and issue.properties == {"synced": True}
    refused = await jira.put("/issue/MIG-2", json={"fields": {"status": {"name": "Done"}}})
    assert refused.status == 400
    assert "status" in refused.body["errors"]


async def test_transitions_list_and_do(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """Transitions come from the site's workflow; doing one moves the status; unknown is 400."""
    listed = await jira.get("/issue/MIG-3/transitions")
    assert listed.status == 200
    assert [(t["id"], t["to"]["name"]) for t in listed.body["transitions"]] == [
        ("11", "To Do"), ("21", "In Progress"), ("31", "Done"),
    ]
    done = await jira.post("/issue/MIG-3/transitions", json={"transition": {"id": "31"}})
    assert done.status == 204
    read = await jira.get("/issue/MIG-3", params={"fields": "status"})
    assert read.body["fields"]["status"]["name"] == "Done"
    unknown = await jira.post("/issue/MIG-3/transitions", json={"transition": {"id": "99"}})
    assert unknown.status == 400
    assert "99" in unknown.body["errorMessages"][0]
    issue = state(sandbox).issue(CLOUD_A, "MIG-3")
    assert issue is not None and issue.status == "Done"


async def test_assignee_set_and_cleared(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """PUT assignee assigns an active user (204), refuses unknown (404) and inactive (400)."""
    assert (await jira.put("/issue/MIG-1/assignee", json={"accountId": BO})).status == 204
    read = await jira.get("/issue/MIG-1", params={"fields": "assignee"})
    assert read.body["fields"]["assignee"]["accountId"] == BO
    unknown = await jira.put("/issue/MIG-1/assignee", json={"accountId": UNKNOWN_ACCOUNT})
    assert unknown.status == 404
    gone = await jira.put("/issue/MIG-1/assignee", json={"accountId": ACME_DEACTIVATED})
    assert gone.status == 400
    assert (await jira.put("/issue/MIG-1/assignee", json={"accountId": "-1"})).status == 204
    issue = state(sandbox).issue(CLOUD_A, "MIG-1")
    assert issue is not None and issue.assignee is None


async def test_comments_with_properties_and_paging(
    jira: JiraClient, sandbox: RunningSandbox
) -> None:
    """POST comment keeps body and properties (201); GET pages them and expands properties."""
    for n in range(3):
        answer = await jira.post(
            "/issue/MIG-1/comment",
            json={"body": adf(f"note {n}"), "properties": [{"key": "row", "value": n}]},
        )
        assert answer.status == 201
        assert answer.body["author"]["accountId"] == ADA
    page = await jira.get(
        "/issue/MIG-1/comment", params={"startAt": "1", "maxResults": "1", "expand": "properties"}
    )
    assert page.status == 200
    assert (page.body["startAt"], page.body["maxResults"], page.body["total"]) == (1, 1, 3)
    [comment] = page.body["comments"]
    assert comment["body"] == adf("note 1")
    assert comment["properties"] == [{"key": "row", "value": 1}]
    plain = await jira.get("/issue/MIG-1/comment")
    assert "properties" not in plain.body["comments"][0]
    issue = state(sandbox).issue(CLOUD_A, "MIG-1")
    assert issue is not None and [c.properties["row"] for c in issue.comments] == [0, 1, 2]
    text = await jira.post("/issue/MIG-1/comment", json={"body": "plain text"})
    assert text.status == 400


async def test_watchers_add_and_list(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """POST watchers takes a JSON string account ID (204); GET lists the watcher once."""
    for _ in range(2):
        assert (await jira.post("/issue/MIG-4/watchers", json=BO)).status == 204
    listed = await jira.get("/issue/MIG-4/watchers")
    assert listed.body["watchCount"] == 1
    assert [w["accountId"] for w in listed.body["watchers"]] == [BO]
    assert listed.body["isWatching"] is False
    assert (await jira.post("/issue/MIG-4/watchers", json=UNKNOWN_ACCOUNT)).status == 404
    issue = state(sandbox).issue(CLOUD_A, "MIG-4")
    assert issue is not None and issue.watchers == [BO]


async def test_issue_property_set_and_get(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """PUT issue property answers 201 then 200; GET returns {key, value}; absent is 404."""
    assert (await jira.get("/issue/MIG-5/properties/sync")).status == 404
    first = await jira.put("/issue/MIG-5/properties/sync", json={"v": 1})
    again = await jira.put("/issue/MIG-5/properties/sync", json={"v": 2})
    assert (first.status, again.status) == (201, 200)
    read = await jira.get("/issue/MIG-5/properties/sync")
    assert read.body == {"key": "sync", "value": {"v": 2}}
    issue = state(sandbox).issue(CLOUD_A, "MIG-5")
    assert issue is not None and issue.properties["sync"] == {"v": 2}


async def test_user_property_of_the_caller_only(
    jira: JiraClient, sandbox: RunningSandbox
) -> None:
    """PUT/GET user property work on the caller's own record; another user's is 403."""
    put = await jira.put("/user/properties/prefs", params={"accountId": ADA}, json={"tz": "UTC"})
    assert put.status == 201
    read = await jira.get("/user/properties/prefs", params={"accountId": ADA})
    assert read.body == {"key": "prefs", "value": {"tz": "UTC"}}
    other = await jira.put("/user/properties/prefs", params={"accountId": BO}, json={})
    assert other.status == 403
    assert (await jira.get("/user/properties/prefs")).status == 400
    assert state(sandbox).site(CLOUD_A).user_properties == {ADA: {"prefs": {"tz": "UTC"}}}


async def test_worklogs_add_and_list(jira: JiraClient, sandbox: RunningSandbox) -> None:
    """POST worklog (Jira's timestamp form, timeSpent text) is 201; GET lists it with properties."""
    answer = await jira.post(
        "/issue/MIG-2/worklog",
        json={
            "started": "2026-03-26T09:00:00.000+0000",
            "timeSpent": "1h 30m",
            "comment": adf("pairing"),
            "properties": [{"key": "source", "value": "tempo"}],
        },
    )
    assert answer.status == 201
    assert answer.body["timeSpentSeconds"] == 5400
    listed = await jira.get("/issue/MIG-2/worklog", params={"expand": "properties"})
    [worklog] = listed.body["worklogs"]
    assert worklog["timeSpent"] == "1h 30m"
    assert worklog["properties"] == [{"key": "source", "value": "tempo"}]
    both = await jira.post(
        "/issue/MIG-2/worklog",
        json={"started": "2026-03-26T09:00:00.000+0000", "timeSpent": "1h",
              "timeSpentSeconds": 60},
    )
    assert both.status == 400
    issue = state(sandbox).issue(CLOUD_A, "MIG-2")
    assert issue is not None and [w.time_spent_seconds for w in issue.worklogs] == [5400]


async def test_report_carries_jira_state_and_calls(
    jira: JiraClient, sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    """The inspection report counts calls per route and shows Jira's state."""
    await jira.put("/issue/MIG-1/properties/p", json=1)
    await jira.get("/issue/MIG-1")
    async with http.get(f"{sandbox.url}/_sandbox/report") as r:
        report = await r.json()
    assert report["jira_calls"] == {
        "PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}": 1,
        "GET /rest/api/3/issue/{issueIdOrKey}": 1,
    }
    assert report["jira"][CLOUD_A]["issues"]["MIG-1"]["properties"] == {"p": 1}
