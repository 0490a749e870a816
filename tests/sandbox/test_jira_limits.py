"""Jira's three limits in the sandbox, each 429 with its full header set, on a clock tests move."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from runner.retry import parse_reset
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import JiraLimits, SandboxConfig
from runner.sandbox.jira.testing import Answer, JiraClient, adf, user_token
from runner.sandbox.testing import ACME_ACTIVE, CLOUD_A, CLOUD_B, GLOBEX_ACTIVE
from tests.fakes import EPOCH, FakeClock

# The type of conftest's start_sandbox fixture (conftest is pytest's to load, not to import).
StartSandbox = Callable[..., AbstractAsyncContextManager[RunningSandbox]]

ADA = ACME_ACTIVE[0]
# The shared clock's epoch is the top of a UTC hour (1_800_000_000 is a multiple of 3600).
HOUR = EPOCH
LOOSE = JiraLimits(quota_points=10_000, burst_get_post=1000, burst_put_delete=1000,
                   per_issue_2s=1000, per_issue_30s=1000)


Clients = tuple[RunningSandbox, FakeClock, JiraClient, JiraClient]


@pytest.fixture
def limited(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> Callable[..., Any]:
    """``async with limited(**limits) as (sb, clock, acme, globex)``: a sandbox with those
    limits (others loose), its fake clock at HOUR + 100 s, a client per site."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Clients]:
        clock = FakeClock(100)
        config = dataclasses.replace(
            sandbox_config, jira_limits=dataclasses.replace(LOOSE, **overrides)
        )
        async with start_sandbox(config, clock=clock) as sb, aiohttp.ClientSession() as http:
            acme = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
            globex = JiraClient(
                http, sb.jira_base(CLOUD_B), user_token(sb.world, CLOUD_B, GLOBEX_ACTIVE[0])
            )
            yield sb, clock, acme, globex

    return start


def assert_full_429(answer: Answer, reason: str, policy: str, retry_after: int,
                    reset_at: float, limit: int) -> None:
    h = answer.headers
    assert answer.status == 429
    assert h["Retry-After"] == str(retry_after)
    assert parse_reset(h["X-RateLimit-Reset"]) == pytest.approx(reset_at)
    assert h["RateLimit-Reason"] == reason
    assert h["X-RateLimit-Limit"] == str(limit)
    assert h["X-RateLimit-Remaining"] == "0"
    assert h["RateLimit-Policy"] == policy
    assert h["RateLimit"] == f'"{policy.split(";")[0][1:-1]}";r=0;t={retry_after}'


async def test_quota_costs_by_objects_read(limited: Callable[..., Any]) -> None:
    """A request costs 1, +1 per core object read, +2 per user read; writes cost 1."""
    async with limited(quota_points=1000) as (_, _, acme, _):
        remaining = []
        for call in (
            acme.put("/issue/MIG-1/properties/p", json=1),  # write: 1
            acme.get("/issue/MIG-1"),  # 1 + the issue
            acme.get("/myself"),  # 1 + a user (2)
            acme.post("/search/jql", json={"jql": "project = MIG"}),  # 1 + 5 issues
        ):
            answer = await call
            assert answer.status in (200, 201)
            remaining.append(int(answer.headers["X-RateLimit-Remaining"]))
    assert remaining == [999, 997, 994, 988]


async def test_quota_spent_answers_429_everywhere_until_the_top_of_the_hour(
    limited: Callable[..., Any],
) -> None:
    """Past the quota every site gets jira-quota-global-based until the window resets."""
    async with limited(quota_points=5) as (sb, clock, acme, globex):
        for _ in range(5):
            assert (await acme.put("/issue/MIG-1/properties/p", json=1)).status in (200, 201)
        refused = await acme.get("/myself")
        assert_full_429(refused, "jira-quota-global-based", '"global-app-quota";q=5;w=3600',
                        3500, HOUR + 3600, 5)
        assert refused.headers["X-RateLimit-Reset"] == "2027-01-15T09:00:00Z"
        assert (await globex.get("/myself")).status == 429
        clock.t = 3600
        assert (await globex.get("/myself")).status == 200
    assert [(e.reason, e.scope, e.retry_after) for e in sb.world.rate_limits] == [
        ("jira-quota-global-based", "quota", 3500.0),
        ("jira-quota-global-based", "quota", 3500.0),
    ]


async def test_success_reports_the_quota_and_warns_near_its_end(
    limited: Callable[..., Any],
) -> None:
    """Successes carry X-RateLimit-*; past 80% use RateLimit with r=; under 20% NearLimit."""
    async with limited(quota_points=10) as (_, _, acme, _):
        answers = [await acme.put("/issue/MIG-1/properties/p", json=n) for n in range(9)]
    first, eighth, ninth = answers[0].headers, answers[7].headers, answers[8].headers
    assert first["X-RateLimit-Limit"] == "10"
    assert first["X-RateLimit-Remaining"] == "9"
    assert first["RateLimit-Policy"] == '"global-app-quota";q=10;w=3600'
    assert "RateLimit" not in eighth and "X-RateLimit-NearLimit" not in eighth
    assert ninth["RateLimit"] == '"global-app-quota";r=1;t=3500'
    assert ninth["X-RateLimit-NearLimit"] == "true"


async def test_burst_per_site_endpoint_and_method(limited: Callable[..., Any]) -> None:
    """A burst bucket is per (site, template, method); empty, it answers jira-burst-based."""
    async with limited(burst_get_post=2, burst_put_delete=1) as (sb, clock, acme, globex):
        assert (await acme.get("/issue/MIG-1")).status == 200
        assert (await acme.get("/issue/MIG-2")).status == 200
        refused = await acme.get("/issue/MIG-3")
        assert_full_429(refused, "jira-burst-based", '"jira-burst-based";q=2;w=1', 1,
                        HOUR + 100.5, 2)
        assert (await acme.get("/issue/MIG-1/comment")).status == 200  # another endpoint
        assert (await globex.get("/issue/GLX-1")).status == 200  # another site
        assert (await acme.put("/issue/MIG-1/properties/a", json=1)).status == 201
        put_refused = await acme.put("/issue/MIG-1/properties/b", json=1)
        assert put_refused.headers["RateLimit-Policy"] == '"jira-burst-based";q=1;w=1'
        clock.advance(0.5)  # one GET token back
        assert (await acme.get("/issue/MIG-3")).status == 200
    scopes = [e.scope for e in sb.world.rate_limits]
    assert scopes == [
        f"{CLOUD_A} GET /rest/api/3/issue/{{issueIdOrKey}}",
        f"{CLOUD_A} PUT /rest/api/3/issue/{{issueIdOrKey}}/properties/{{propertyKey}}",
    ]


async def test_per_issue_writes_in_2s_and_30s_windows(limited: Callable[..., Any]) -> None:
    """Writes to one issue are capped per 2 s and per 30 s, by key or ID alike."""
    async with limited(per_issue_2s=3, per_issue_30s=5) as (sb, clock, acme, _):
        issue_id = (await acme.get("/issue/MIG-1")).body["id"]
        for path in ("/issue/MIG-1/comment", f"/issue/{issue_id}/comment", "/issue/mig-1/comment"):
            assert (await acme.post(path, json={"body": adf("hi")})).status == 201
        refused = await acme.post("/issue/MIG-1/comment", json={"body": adf("hi")})
        assert_full_429(refused, "jira-per-issue-on-write", '"jira-per-issue-on-write";q=3;w=2',
                        2, HOUR + 102, 3)
        assert (await acme.put("/issue/MIG-2/properties/p", json=1)).status == 201
        assert (await acme.get("/issue/MIG-1/comment")).status == 200  # reads don't count
        clock.advance(2)
        for _ in range(2):
            assert (await acme.put("/issue/MIG-1/properties/p", json=1)).status in (200, 201)
        refused = await acme.put("/issue/MIG-1/properties/p", json=1)
        assert_full_429(refused, "jira-per-issue-on-write",
                        '"jira-per-issue-on-write";q=5;w=30', 28, HOUR + 130, 5)
    assert {e.scope for e in sb.world.rate_limits} == {"MIG-1"}


async def test_edge_429_has_no_retry_after_and_no_reason(limited: Callable[..., Any]) -> None:
    """With edge_429_rate=1 a 429 carries only X-Failure-Category and X-RateLimit-*."""
    async with limited(burst_get_post=1, edge_429_rate=1.0) as (sb, _, acme, _):
        assert (await acme.get("/myself")).status == 200
        refused = await acme.get("/myself")
    assert refused.status == 429
    assert refused.headers["X-Failure-Category"] == "FAILURE CLIENT RATE LIMITED"
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in refused.headers
    for absent in ("Retry-After", "RateLimit-Reason", "RateLimit", "RateLimit-Policy"):
        assert absent not in refused.headers
    assert [(e.reason, e.retry_after) for e in sb.world.rate_limits] == [("edge", None)]


async def test_beta_headers_inform_without_enforcing(limited: Callable[..., Any]) -> None:
    """With beta_headers the would-be 429 succeeds, its headers prefixed Beta-."""
    async with limited(quota_points=1, beta_headers=True) as (sb, _, acme, _):
        assert (await acme.put("/issue/MIG-1/properties/p", json=1)).status == 201
        answer = await acme.put("/issue/MIG-1/properties/p", json=2)
    h = answer.headers
    assert answer.status == 200
    assert h["Beta-Retry-After"] == "3500"
    assert h["Beta-RateLimit-Reason"] == "jira-quota-global-based"
    assert h["Beta-RateLimit-Policy"] == '"global-app-quota";q=1;w=3600'
    assert h["Beta-RateLimit"].startswith('"global-app-quota";r=0;t=')
    assert h["Beta-X-RateLimit-Remaining"] == "0"
    for absent in ("Retry-After", "RateLimit-Reason", "X-RateLimit-Remaining"):
        assert absent not in h
    assert sb.world.rate_limits == []


async def test_disabled_limits_neither_refuse_nor_report(limited: Callable[..., Any]) -> None:
    """enabled=false turns every limit off: no 429, no rate-limit headers."""
    async with limited(quota_points=1, burst_get_post=1, enabled=False) as (sb, _, acme, _):
        answers = [await acme.get("/myself") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert not any(k.lower().startswith(("x-ratelimit", "ratelimit")) for k in answers[2].headers)
    assert sb.world.rate_limits == []
