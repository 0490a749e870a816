"""What the sandbox's Jira refuses before acting: unknown sites and paths, bad tokens, bodies
and parameters the spec rejects (with the real spec and with the project's own schemas)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import SandboxConfig
from runner.sandbox.jira import JiraState
from runner.sandbox.jira.testing import JiraClient, user_token
from runner.sandbox.testing import ACME_ACTIVE, CLOUD_A, CLOUD_B
from tests.fakes import FakeClock

# The type of conftest's start_sandbox fixture (conftest is pytest's to load, not to import).
StartSandbox = Callable[..., AbstractAsyncContextManager[RunningSandbox]]

ADA = ACME_ACTIVE[0]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_unknown_cloud_id_is_404(sandbox: RunningSandbox, http: aiohttp.ClientSession
                                       ) -> None:
    """A cloud ID no site has answers 404, whatever the token."""
    token = user_token(sandbox.world, CLOUD_A, ADA)
    jira = JiraClient(http, sandbox.jira_base("00000000-0000-4000-8000-000000000000"), token)
    assert (await jira.get("/myself")).status == 404


async def test_unknown_path_or_method_is_404(sandbox: RunningSandbox,
                                             http: aiohttp.ClientSession) -> None:
    """A path the API lacks, or a method a path lacks, answers 404 with errorMessages."""
    jira = JiraClient(http, sandbox.jira_base(CLOUD_A), user_token(sandbox.world, CLOUD_A, ADA))
    for method, path in (("GET", "/nope"), ("DELETE", "/myself"), ("PATCH", "/issue/MIG-1")):
        answer = await jira.call(method, path)
        assert answer.status == 404, (method, path)
        assert answer.body["errorMessages"]
    assert sandbox.world.jira_calls == {}


async def test_token_of_another_site_is_401(sandbox: RunningSandbox,
                                            http: aiohttp.ClientSession) -> None:
    """A token minted for globex is refused on acme with FAILURE_CLIENT_AUTH_MISMATCH."""
    token = user_token(sandbox.world, CLOUD_B, ADA)
    answer = await JiraClient(http, sandbox.jira_base(CLOUD_A), token).get("/myself")
    assert answer.status == 401
    assert answer.headers["x-failure-category"] == "FAILURE_CLIENT_AUTH_MISMATCH"
    assert answer.body["errorMessages"]


async def test_missing_or_unknown_token_is_401(sandbox: RunningSandbox,
                                               http: aiohttp.ClientSession) -> None:
    """No Authorization header, or a token the sandbox never issued, is a 401."""
    url = f"{sandbox.jira_base(CLOUD_A)}/rest/api/3/myself"
    async with http.get(url) as r:
        assert r.status == 401
    answer = await JiraClient(http, sandbox.jira_base(CLOUD_A), "made-up").get("/myself")
    assert answer.status == 401
    assert answer.headers["x-failure-category"] == "FAILURE_CLIENT_AUTH_MISMATCH"


async def test_expired_token_is_401(sandbox_config: SandboxConfig, start_sandbox: StartSandbox,
                                    http: aiohttp.ClientSession) -> None:
    """A token past its ttl is refused (and its failure category says it expired)."""
    clock = FakeClock()
    async with start_sandbox(sandbox_config, clock=clock) as sb:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA, 60))
        assert (await jira.get("/myself")).status == 200
        clock.advance(60)
        answer = await jira.get("/myself")
    assert answer.status == 401
    assert answer.headers["x-failure-category"] == "FAILURE_CLIENT_AUTH_EXPIRED"
    assert "expired" in answer.body["errorMessages"][0]


BAD_REQUESTS = [
    # (method, path, query, body, field named in "errors")
    ("POST", "/issue", None, {"fields": "not an object"}, "fields"),
    ("PUT", "/issue/MIG-1/assignee", None, {"accountId": ADA, "bogus": 1}, "body"),
    ("POST", "/issue/MIG-1/transitions", None, {"transition": {"id": 31}}, "transition.id"),
    ("POST", "/issue/MIG-1/watchers", None, 42, "body"),
    ("POST", "/issue/MIG-1/comment", None, {"body": {}, "id": "7"}, "id"),
    ("POST", "/search/jql", None, {"jql": "key = MIG-1", "limit": 5}, "body"),
    ("GET", "/issue/MIG-1/comment", {"maxResults": "ten"}, None, "maxResults"),
    ("GET", "/issue/MIG-1/comment", {"orderBy": "sideways"}, None, "orderBy"),
    ("POST", "/issue/MIG-1/worklog", None,
     {"started": "yesterday", "timeSpentSeconds": 60}, "started"),
]


async def _bad_requests_refused(sb: RunningSandbox, http: aiohttp.ClientSession) -> None:
    jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
    for method, path, query, body, field in BAD_REQUESTS:
        kwargs = {"params": query} if body is None else {"params": query, "json": body}
        answer = await jira.call(method, path, **kwargs)
        assert answer.status == 400, (method, path, answer.body)
        assert answer.body["errorMessages"], (method, path)
        assert field in answer.body["errors"], (method, path, answer.body)
    missing = await jira.put("/issue/MIG-1/properties/p", data=b"")
    assert missing.status == 400
    not_json = await jira.post("/issue/MIG-1/comment", data="hello",
                               headers={"Content-Type": "text/plain"})
    assert not_json.status == 415
    state: JiraState = sb.world.parts["jira"]
    issue = state.issue(CLOUD_A, "MIG-1")
    assert issue is not None and not issue.comments and not issue.properties


async def test_invalid_requests_are_400_with_own_schemas(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    """Without spec_dir, the project's schemas refuse bad bodies and parameters, naming them."""
    assert sandbox_config.spec_dir is None
    async with start_sandbox(sandbox_config) as sb:
        await _bad_requests_refused(sb, http)


async def test_invalid_requests_are_400_with_the_real_spec(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox, http: aiohttp.ClientSession,
    specs_dir: Path,
) -> None:
    """With spec_dir, the real OpenAPI spec refuses the same requests the same way."""
    config = dataclasses.replace(sandbox_config, spec_dir=specs_dir)
    async with start_sandbox(config) as sb:
        await _bad_requests_refused(sb, http)
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        fine = await jira.post(
            "/issue/MIG-1/worklog",
            json={"started": "2026-03-26T09:00:00.000+0000", "timeSpentSeconds": 60},
        )
        assert fine.status == 201
