"""search/jql in the sandbox: key lists, projects, issue properties (with paths), paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from runner.errors import ConfigError
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import SandboxConfig, load_sandbox_config
from runner.sandbox.jira.testing import JiraClient, user_token
from runner.sandbox.testing import ACME_ACTIVE, CLOUD_A, FakeClock, StartSandbox

ADA = ACME_ACTIVE[0]


@pytest.fixture
async def jira(sandbox: RunningSandbox) -> AsyncIterator[JiraClient]:
    """Acme as ADA, with properties set on MIG-2 and MIG-4."""
    async with aiohttp.ClientSession() as http:
        client = JiraClient(http, sandbox.jira_base(CLOUD_A), user_token(sandbox.world, CLOUD_A,
                                                                          ADA))
        await client.put("/issue/MIG-2/properties/forge-runner.item",
                         json={"item": "job/row-2/create", "meta": {"batch": 7}})
        await client.put("/issue/MIG-4/properties/forge-runner.item",
                         json={"item": "job/row-4/create", "meta": {"batch": 7}})
        await client.put("/issue/MIG-4/properties/tags", json={"list": ["x", "y"]})
        yield client


async def keys(jira: JiraClient, jql: str, **body: Any) -> list[str]:
    answer = await jira.post("/search/jql", json={"jql": jql, **body})
    assert answer.status == 200, answer.body
    assert answer.body["isLast"] is True
    return [issue["key"] for issue in answer.body["issues"]]


async def test_search_by_key_list_and_key(jira: JiraClient) -> None:
    """``key in (...)`` and ``key = X`` find those issues, in creation order."""
    assert await keys(jira, "key in (MIG-3, MIG-1, mig-5)") == ["MIG-1", "MIG-3", "MIG-5"]
    assert await keys(jira, "issuekey = MIG-2") == ["MIG-2"]
    assert await keys(jira, "key not in (MIG-1, MIG-2) AND project = MIG") == [
        "MIG-3", "MIG-4", "MIG-5",
    ]


async def test_search_by_issue_property_path(jira: JiraClient) -> None:
    """``issue.property[k].path = "v"`` matches by value, also nested and inside arrays."""
    found = await keys(jira, 'issue.property[forge-runner.item].item = "job/row-4/create"')
    assert found == ["MIG-4"]
    assert await keys(jira, "issue.property[forge-runner.item].meta.batch = 7") == [
        "MIG-2", "MIG-4",
    ]
    assert await keys(jira, "issue.property[tags].list = 'y' AND project = MIG") == ["MIG-4"]
    assert await keys(jira, 'issue.property[forge-runner.item].item = "nope"') == []


async def test_search_returns_requested_fields_and_properties(jira: JiraClient) -> None:
    """Fields default to none beyond id/key; asked-for fields and properties come back."""
    bare = await jira.get("/search/jql", params={"jql": "key = MIG-4"})
    assert set(bare.body["issues"][0]) == {"id", "key", "self"}
    rich = await jira.get(
        "/search/jql",
        params={"jql": "key = MIG-4", "fields": "summary,status", "properties": "tags"},
    )
    [issue] = rich.body["issues"]
    assert issue["fields"] == {"summary": "Migrated issue 4",
                               "status": {"name": "To Do", "id": "1"}}
    assert issue["properties"] == {"tags": {"list": ["x", "y"]}}


async def test_search_pages_with_next_page_token(jira: JiraClient) -> None:
    """maxResults splits results; nextPageToken fetches the rest until isLast."""
    first = await jira.post("/search/jql", json={"jql": "project = MIG", "maxResults": 2})
    assert [i["key"] for i in first.body["issues"]] == ["MIG-1", "MIG-2"]
    assert first.body["isLast"] is False
    seen = [i["key"] for i in first.body["issues"]]
    token = first.body["nextPageToken"]
    while token:
        page = await jira.post("/search/jql", json={"jql": "project = MIG", "maxResults": 2,
                                                    "nextPageToken": token})
        seen += [i["key"] for i in page.body["issues"]]
        token = page.body.get("nextPageToken")
    assert seen == ["MIG-1", "MIG-2", "MIG-3", "MIG-4", "MIG-5"]


async def test_jql_refusals_are_400(jira: JiraClient) -> None:
    """Unbounded, unparsable, unsupported or naming a missing issue/project: 400 with reason."""
    for jql, words in (
        ("", "Unbounded"),
        ("ORDER BY key", "Unbounded"),
        ("key = MIG-99", "MIG-99"),
        ("project = NOPE", "NOPE"),
        ("key = MIG-1 OR key = MIG-2", "expecting AND"),
        ("summary ~ hello", "summary"),
        ("key in (MIG-1", "')'"),
    ):
        answer = await jira.post("/search/jql", json={"jql": jql})
        assert answer.status == 400, jql
        assert words in answer.body["errorMessages"][0], (jql, answer.body)


async def test_search_sees_a_created_issue_only_after_the_lag(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """With ``search_lag_s`` set, an issue created through the API is found by search only once
    that many seconds have passed on the sandbox's clock; seeded issues are found at once."""
    clock = FakeClock()
    lagging = replace(sandbox_config, search_lag_s=5.0)
    async with start_sandbox(lagging, clock=clock) as sb, aiohttp.ClientSession() as http:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        created = await jira.post("/issue", json={
            "fields": {"project": {"key": "MIG"}, "issuetype": {"name": "Task"},
                       "summary": "new"},
            "properties": [{"key": "forge-runner.item", "value": {"item": "r#0"}}],
        })
        assert created.status == 201, created.body
        jql = 'issue.property[forge-runner.item].item = "r#0"'
        assert await keys(jira, jql) == []
        assert await keys(jira, "key = MIG-1") == ["MIG-1"]
        clock.advance(4.9)
        assert await keys(jira, jql) == []
        clock.advance(0.1)
        assert await keys(jira, jql) == [created.body["key"]]


def test_a_negative_search_lag_is_a_config_error() -> None:
    """``[sandbox] search_lag_s`` below 0 is refused naming the key."""
    with pytest.raises(ConfigError, match=r"sandbox\.search_lag_s"):
        load_sandbox_config({"search_lag_s": -1})
    assert load_sandbox_config({}).search_lag_s == 3.0
    assert load_sandbox_config({"search_lag_s": 0}).search_lag_s == 0
