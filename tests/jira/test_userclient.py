"""UserJira, the client a Python action gets: requests built from a path, sent through the
executor, failures raised as errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runner.errors import JiraCallError, JiraUncertainError, TransportError
from runner.jira.userclient import UserJira, build_request
from runner.sandbox.config import Faults
from runner.sandbox.testing import CLOUD_A
from tests.jira.harness import (
    ACME_USER,
    COMMENT_T,
    StartSandbox,
    adf,
    harness,
    sandbox_config,
)


def test_template_issue_and_defaults_inferred() -> None:
    """A known path gets its spec template, a write its issue, POST is not idempotent."""
    req = build_request("post", "/rest/api/3/issue/MIG-7/comment", json={"body": 1})
    assert (req.method, req.template, req.issue) == ("POST", COMMENT_T, "MIG-7")
    assert not req.idempotent and req.cost == 1
    put = build_request("PUT", "rest/api/3/issue/MIG%2D7/properties/k")
    assert put.path == "/rest/api/3/issue/MIG%2D7/properties/k"
    assert put.template == "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"
    assert put.issue == "MIG-7" and put.idempotent
    get = build_request("GET", "/rest/api/3/issue/MIG-7?fields=summary", query={"expand": "x"})
    assert get.issue is None and dict(get.query) == {"fields": "summary", "expand": "x"}
    assert get.cost == 2
    assert build_request("POST", "/rest/api/3/issue/MIG-7/comment", idempotent=True).idempotent


def test_unknown_path_is_its_own_template() -> None:
    """A path matching no known endpoint is its own burst key; a bad method is refused."""
    assert build_request("GET", "/rest/api/3/dashboard/10").template == "/rest/api/3/dashboard/10"
    with pytest.raises(ValueError, match="PATCH"):
        build_request("PATCH", "/rest/api/3/myself")


async def test_requests_go_through_the_executor(start_sandbox: StartSandbox) -> None:
    """Reads return the body; a comment lands in Jira under its endpoint's template."""
    async with start_sandbox(sandbox_config()) as sb, harness(sb) as h:
        jira = UserJira(h.executor, h.acme, ACME_USER)
        me = await jira.request("GET", "/rest/api/3/myself")
        created = await jira.request("POST", "/rest/api/3/issue/MIG-2/comment",
                                     json={"body": adf("from python")})
    assert me["accountId"] == ACME_USER
    assert created["id"]
    assert sb.world.jira_calls[f"POST {COMMENT_T}"] == 1
    assert len(sb.world.parts["jira"].site(CLOUD_A).find("MIG-2").comments) == 1
    assert h.observer.named("jira.call")[-1]["template"] == COMMENT_T


async def test_failures_raise(start_sandbox: StartSandbox) -> None:
    """A permanent failure raises JiraCallError with Jira's messages."""
    async with start_sandbox(sandbox_config()) as sb, harness(sb) as h:
        jira = UserJira(h.executor, h.acme, ACME_USER)
        with pytest.raises(JiraCallError) as caught:
            await jira.request("GET", "/rest/api/3/issue/NOPE-1")
    assert caught.value.status == 404 and caught.value.messages
    assert "GET /rest/api/3/issue/NOPE-1 on acme" in str(caught.value)


async def test_unknown_outcome_raises_uncertain(start_sandbox: StartSandbox) -> None:
    """A POST answered by a 500 raises JiraUncertainError (a TransportError) after one send."""
    config = replace(sandbox_config(), faults=Faults(http_500=1.0))
    async with start_sandbox(config) as sb, harness(sb) as h:
        jira = UserJira(h.executor, h.acme, ACME_USER)
        with pytest.raises(JiraUncertainError) as caught:
            await jira.request("POST", "/rest/api/3/issue/MIG-1/comment",
                               json={"body": adf("x")})
    assert isinstance(caught.value, TransportError) and caught.value.status == 500
    assert sb.world.jira_calls[f"POST {COMMENT_T}"] == 1
