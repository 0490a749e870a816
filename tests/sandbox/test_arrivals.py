"""The sandbox's arrival logs: who sent each Jira request and mint, for whom, for which item, what
came of it; off by default, and served as JSON to a test in another process."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import aiohttp
import pytest

from runner.actions import ITEM_PROPERTY_KEY as RUNNER_ITEM_PROPERTY_KEY
from runner.errors import ConfigError
from runner.sandbox import arrivals
from runner.sandbox.app import RunningSandbox
from runner.sandbox.arrivals import JiraArrival, MintArrival, jira_from_json, mint_from_json
from runner.sandbox.config import Faults, JiraLimits, SandboxConfig, load_sandbox_config
from runner.sandbox.jira.testing import JiraClient, adf, user_token
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    CLOUD_A,
    FakeClock,
    StartSandbox,
    mint_request,
    workspace_ari,
)

ADA, BOB = ACME_ACTIVE[0], ACME_ACTIVE[1]
WORKER = "forge-runner/0.1.0 (worker w-7f3a)"
COMMENT = "POST /rest/api/3/issue/{issueIdOrKey}/comment"


def recording(config: SandboxConfig, **changes: Any) -> SandboxConfig:
    return dataclasses.replace(config, record_arrivals=True, **changes)


def comment(item: str | None, text: str = "hello") -> dict[str, Any]:
    body: dict[str, Any] = {"body": adf(text)}
    if item is not None:
        body["properties"] = [{"key": ITEM_PROPERTY_KEY, "value": {"item": item}}]
    return body


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def mint(sb: RunningSandbox, user: str, sender: str = WORKER) -> None:
    token = issue_system_token(sb.config, "dev", now=sb.world.clock())
    headers = {"Authorization": f"Bearer {token}", "User-Agent": sender}
    async with aiohttp.ClientSession() as http, http.post(
            sb.gateway_url, json=mint_request([workspace_ari(CLOUD_A)], user),
            headers=headers) as resp:
        assert resp.status == 200


ITEM_PROPERTY_KEY = arrivals.ITEM_PROPERTY_KEY


def test_the_sandbox_marker_key_is_the_one_the_runner_sends() -> None:
    """The sandbox's copy of the create marker's key is the runner's."""
    assert arrivals.ITEM_PROPERTY_KEY == RUNNER_ITEM_PROPERTY_KEY


async def test_off_by_default_and_the_endpoint_says_how_to_turn_it_on(
        sandbox: RunningSandbox) -> None:
    """A default sandbox logs no arrival, and /_sandbox/arrivals answers 404 saying which key
    turns the logs on."""
    async with aiohttp.ClientSession() as http:
        jira = JiraClient(http, sandbox.jira_base(CLOUD_A), user_token(sandbox.world, CLOUD_A, ADA))
        assert (await jira.post("/issue/MIG-1/comment", json=comment("r1#0"))).status == 201
    assert sandbox.world.jira_arrivals is None and sandbox.world.mint_arrivals is None
    status, body = await get_json(sandbox.url + "/_sandbox/arrivals")
    assert status == 404
    assert "record_arrivals = true" in body["error"]


async def test_a_create_records_sender_account_marker_and_what_it_made(
        sandbox_config: SandboxConfig, start_sandbox: StartSandbox) -> None:
    """A create's arrival names its User-Agent, the token's account, the item marker, the
    status, that it was applied, the ID it made and the points it cost."""
    async with start_sandbox(recording(sandbox_config)) as sb, aiohttp.ClientSession() as http:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        answer = await jira.post("/issue/MIG-2/comment", json=comment("LEG-1#0"),
                                 headers={"User-Agent": WORKER})
        (arrival,) = sb.world.jira_arrivals or []
    assert answer.status == 201
    assert arrival == JiraArrival(
        at=arrival.at, cloud_id=CLOUD_A, route=COMMENT, issue="MIG-2",
        path=f"/ex/jira/{CLOUD_A}/rest/api/3/issue/MIG-2/comment", sender=WORKER, account=ADA,
        marker="LEG-1#0", status=201, applied=True, created=str(answer.body["id"]), points=1)


async def test_refused_requests_are_logged_as_not_applied(
        sandbox_config: SandboxConfig, start_sandbox: StartSandbox) -> None:
    """An expired token's request keeps its account but is a 401, not applied; a per-issue 429
    is not applied and costs no points; a read is applied but creates nothing."""
    clock = FakeClock()
    config = recording(sandbox_config, jira_limits=JiraLimits(per_issue_2s=1))
    async with start_sandbox(config, clock=clock) as sb, aiohttp.ClientSession() as http:
        base = sb.jira_base(CLOUD_A)
        short = JiraClient(http, base, user_token(sb.world, CLOUD_A, BOB, ttl_s=10))
        ada = JiraClient(http, base, user_token(sb.world, CLOUD_A, ADA))
        statuses = [
            (await ada.post("/issue/MIG-3/comment", json=comment("a#0"))).status,
            (await ada.post("/issue/MIG-3/comment", json=comment("b#0"))).status,
            (await ada.get("/issue/MIG-3")).status,
        ]
        clock.advance(11)
        statuses.append((await short.post("/issue/MIG-4/comment", json=comment("c#0"))).status)
        logged = list(sb.world.jira_arrivals or [])
    assert statuses == [201, 429, 200, 401]
    assert [(a.marker, a.account, a.status, a.applied, a.points) for a in logged] == [
        ("a#0", ADA, 201, True, 1), ("b#0", ADA, 429, False, 0),
        (None, ADA, 200, True, 2), ("c#0", BOB, 401, False, 0)]
    assert [a.created is not None for a in logged] == [True, False, False, False]


async def test_an_answer_lost_after_the_effect_is_applied_and_a_drop_has_no_status(
        sandbox_config: SandboxConfig, start_sandbox: StartSandbox) -> None:
    """A 500 that strikes after the write: applied, status 500 (the client never learns the
    ID, the log does); a dropped connection before the write: no status, not applied."""
    after = recording(sandbox_config, faults=Faults(http_500=1.0, after_effect=1.0))
    before = recording(sandbox_config, faults=Faults(drop_connection=1.0))
    logged: list[JiraArrival] = []
    for config in (after, before):
        async with start_sandbox(config) as sb, aiohttp.ClientSession() as http:
            jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
            with contextlib.suppress(aiohttp.ClientError):
                await jira.post("/issue/MIG-1/comment", json=comment("x#0"))
            logged += sb.world.jira_arrivals or []
    lost, dropped = logged
    assert (lost.status, lost.applied, lost.created is not None) == (500, True, True)
    assert (dropped.status, dropped.applied, dropped.created) == (None, False, None)


async def test_mints_record_sender_account_and_whether_a_token_was_issued(
        sandbox_config: SandboxConfig, start_sandbox: StartSandbox) -> None:
    """Each mint's arrival names the User-Agent and the user asked for; a deactivated user's
    mint passed the limit but got no token."""
    async with start_sandbox(recording(sandbox_config)) as sb:
        await mint(sb, ADA)
        await mint(sb, ACME_DEACTIVATED, sender="other")
        logged = list(sb.world.mint_arrivals or [])
    assert logged == [
        MintArrival(logged[0].at, "dev", True, sender=WORKER, account=ADA, issued=True),
        MintArrival(logged[1].at, "dev", True, sender="other", account=ACME_DEACTIVATED,
                    issued=False),
    ]


async def test_the_endpoint_serves_the_logs_from_an_offset(
        sandbox_config: SandboxConfig, start_sandbox: StartSandbox) -> None:
    """GET /_sandbox/arrivals gives every entry as JSON, each read back equal to the logged one;
    ?jira=N&mints=M gives only those after the first N and M; a bad offset is a 400."""
    async with start_sandbox(recording(sandbox_config)) as sb, aiohttp.ClientSession() as http:
        await mint(sb, ADA)
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        for n in range(3):
            await jira.post("/issue/MIG-1/comment", json=comment(f"r{n}#0"))
        status, whole = await get_json(sb.url + "/_sandbox/arrivals")
        _, tail = await get_json(sb.url + "/_sandbox/arrivals?jira=2&mints=1")
        bad, _ = await get_json(sb.url + "/_sandbox/arrivals?jira=-1")
        logged_jira, logged_mints = list(sb.world.jira_arrivals or []), sb.world.mint_arrivals
    assert status == 200
    assert [jira_from_json(a) for a in whole["jira"]] == logged_jira
    assert [mint_from_json(m) for m in whole["mints"]] == logged_mints
    assert [a["marker"] for a in tail["jira"]] == ["r2#0"] and tail["mints"] == []
    assert bad == 400


def test_record_arrivals_is_a_sandbox_config_key() -> None:
    """`[sandbox] record_arrivals = true` turns the logs on; a value that isn't a boolean is
    refused naming the key."""
    assert load_sandbox_config({"record_arrivals": True}).record_arrivals
    assert not load_sandbox_config({}).record_arrivals
    with pytest.raises(ConfigError, match=r"sandbox\.record_arrivals"):
        load_sandbox_config({"record_arrivals": "yes"})
