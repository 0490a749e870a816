"""Seeded faults in the sandbox's Jira: the same seed replays the same failures, whatever the
interleaving of paths; 503s say when to retry; drops close the connection unanswered."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import Faults, SandboxConfig
from runner.sandbox.jira import JiraState
from runner.sandbox.jira.faults import FaultPlan
from runner.sandbox.jira.testing import JiraClient, adf, user_token
from runner.sandbox.testing import ACME_ACTIVE, CLOUD_A, CLOUD_B, GLOBEX_ACTIVE

# The type of conftest's start_sandbox fixture (conftest is pytest's to load, not to import).
StartSandbox = Callable[..., AbstractAsyncContextManager[RunningSandbox]]

ADA = ACME_ACTIVE[0]
MIXED = Faults(http_500=0.15, http_502=0.1, http_503=0.1, drop_connection=0.1,
               retry_after_503_s=7)


def with_faults(config: SandboxConfig, faults: Faults, seed: int = 7) -> SandboxConfig:
    return dataclasses.replace(config, faults=faults, seed=seed)


async def outcome(jira: JiraClient, method: str, path: str, **kwargs: Any) -> str:
    """The status as text, or "drop" when the connection closed without an answer."""
    try:
        answer = await jira.call(method, path, **kwargs)
    except aiohttp.ClientError:
        return "drop"
    return str(answer.status)


async def run_sequence(sb: RunningSandbox, paths: list[str]) -> list[str]:
    """POST each path in turn. POST because aiohttp silently resends an idempotent request
    once when its connection drops, which would hide the drop being tested."""
    async with aiohttp.ClientSession() as http:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        return [await outcome(jira, "POST", p, json=BODIES[p]) for p in paths]


SEARCH, COMMENT_1, COMMENT_2 = "/search/jql", "/issue/MIG-1/comment", "/issue/MIG-2/comment"
BODIES: dict[str, Any] = {
    SEARCH: {"jql": "project = MIG"},
    COMMENT_1: {"body": adf("one")},
    COMMENT_2: {"body": adf("two")},
}
SEQUENCE = [SEARCH] * 40


async def test_same_seed_replays_the_same_faults(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Two sandboxes with one seed fail the same requests the same way; another seed differs."""
    runs = []
    for seed in (7, 7, 8):
        async with start_sandbox(with_faults(sandbox_config, MIXED, seed)) as sb:
            runs.append((await run_sequence(sb, SEQUENCE), dict(sb.world.faults)))
    (first, first_counts), (second, second_counts), (other, _) = runs
    assert first == second
    assert first_counts == second_counts
    assert set(first) == {"200", "500", "502", "503", "drop"}
    assert other != first


async def test_faults_do_not_depend_on_interleaving(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Each path's n-th request meets the same fate whether paths are interleaved or not."""
    config = with_faults(sandbox_config, MIXED)
    a, b = COMMENT_1, COMMENT_2
    async with start_sandbox(config) as sb:
        grouped = await run_sequence(sb, [a] * 10 + [b] * 10)
    async with start_sandbox(config) as sb:
        interleaved = await run_sequence(sb, [a, b] * 10)
    assert "201" in grouped and len(set(grouped)) > 2  # a mix, not all one fate
    assert interleaved[0::2] == grouped[:10]
    assert interleaved[1::2] == grouped[10:]


async def test_503_carries_retry_after_and_faults_are_counted(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """An injected 503 says Retry-After: retry_after_503_s; world.faults counts each kind."""
    faults = Faults(http_503=1.0, retry_after_503_s=7)
    async with start_sandbox(with_faults(sandbox_config, faults)) as sb, \
            aiohttp.ClientSession() as http:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        answers = [await jira.get("/myself") for _ in range(2)]
    assert [a.status for a in answers] == [503, 503]
    assert answers[0].headers["Retry-After"] == "7"
    assert sb.world.faults == {"503": 2}
    assert sb.world.jira_calls == {"GET /rest/api/3/myself": 2}


async def test_dropped_connection_gets_no_answer(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A drop closes the connection without a response, and is counted."""
    async with start_sandbox(with_faults(sandbox_config, Faults(drop_connection=1.0))) as sb:
        assert await run_sequence(sb, [SEARCH, SEARCH]) == ["drop", "drop"]
    assert sb.world.faults == {"drop": 2}


async def test_only_listed_sites_get_faults(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """With only_cloud_ids, other sites answer normally."""
    faults = Faults(http_500=1.0, only_cloud_ids=(CLOUD_B,))
    async with start_sandbox(with_faults(sandbox_config, faults)) as sb, \
            aiohttp.ClientSession() as http:
        acme = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        globex = JiraClient(
            http, sb.jira_base(CLOUD_B), user_token(sb.world, CLOUD_B, GLOBEX_ACTIVE[0])
        )
        assert (await acme.get("/myself")).status == 200
        assert (await globex.get("/myself")).status == 500


async def test_after_effect_faults_lose_the_answer_not_the_write(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """With after_effect=1 a create answered 500 (or dropped) was made all the same."""
    faults = Faults(http_500=0.5, drop_connection=0.5, after_effect=1.0)
    async with start_sandbox(with_faults(sandbox_config, faults)) as sb, \
            aiohttp.ClientSession() as http:
        jira = JiraClient(http, sb.jira_base(CLOUD_A), user_token(sb.world, CLOUD_A, ADA))
        results = [
            await outcome(jira, "POST", "/issue/MIG-1/comment", json={"body": adf(f"n{n}")})
            for n in range(6)
        ]
    assert set(results) <= {"500", "drop"}
    state: JiraState = sb.world.parts["jira"]
    issue = state.issue(CLOUD_A, "MIG-1")
    assert issue is not None and len(issue.comments) == 6
    assert sb.world.faults["after_effect"] == 6


def test_latency_is_drawn_within_bounds_from_the_seed() -> None:
    """Latency is uniform in [min, max] ms, and the same seed draws the same values."""
    faults = Faults(latency_ms_min=20, latency_ms_max=80)

    def draws(seed: int) -> list[float]:
        plan = FaultPlan(faults, seed)
        return [plan.draw(CLOUD_A, "GET", f"/p/{n % 3}").latency_s for n in range(50)]

    first = draws(1)
    assert all(0.020 <= s <= 0.080 for s in first)
    assert len(set(first)) > 40
    assert draws(1) == first
    assert draws(2) != first
