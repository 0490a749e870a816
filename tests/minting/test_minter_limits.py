"""The minter under pressure: each rate-limit shape pauses the bucket for every caller, 5xx and
resets are retried by the policy, and system tokens are waited for instead of failing."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.budgets.mint import MintBucket
from runner.config.configfile import (
    EnvironmentConfig,
    GatewayMessages,
    RetryPolicy,
    SiteConfig,
    SystemTokenSource,
)
from runner.errors import TransportError
from runner.events import MintRateLimited, MintRetry, Pause, SystemTokenWaiting
from runner.minting.gateway import GatewayClient
from runner.minting.minter import Minter
from runner.minting.system_tokens import SystemTokenProvider
from runner.minting.user_tokens import TokenCache
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import MintLimit
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    CLOUD_A,
    INSTALLATION_A,
    StartSandbox,
    make_sandbox_config,
    pattern_account,
    workspace_ari,
)
from tests.fakes import Events

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
RETRY = RetryPolicy(attempts=4, wait_initial_s=0.5, wait_max_s=2.0, wait_jitter_s=0.0,
                    deadline_s=60.0)
FAST_RETRY = dataclasses.replace(RETRY, wait_initial_s=0.05, wait_max_s=0.2)


@asynccontextmanager
async def minter_for(
    sb: RunningSandbox,
    tmp_path: Path,
    *,
    gateway_url: str | None = None,
    limit: int = 1000,
    window_s: float = 60.0,
    retry: RetryPolicy = RETRY,
    events: Events | None = None,
    system_token: str | None = None,
) -> AsyncIterator[tuple[Minter, SiteConfig]]:
    token_file = tmp_path / "dev.token"
    token_file.write_text(system_token or issue_system_token(sb.config, "dev"))
    source = SystemTokenSource(file=token_file, max_wait_s=30.0)
    url = gateway_url or sb.gateway_url
    env = EnvironmentConfig("dev", APP_ID, source, gateway_url=url, mint_limit=limit,
                            mint_window_s=window_s)
    site = SiteConfig("acme", CLOUD_A, INSTALLATION_A, "dev", sb.jira_base(CLOUD_A),
                      workspace_ari(CLOUD_A))
    async with aiohttp.ClientSession() as session:
        minter = Minter(
            env,
            gateway=GatewayClient(session, url, messages=GatewayMessages(), timeout_s=5.0),
            system_tokens=SystemTokenProvider(source, "dev", observer=events,
                                              poll_initial_s=0.05, poll_max_s=0.2),
            bucket=MintBucket("dev", limit, window_s, observer=events),
            cache=TokenCache(),
            retry=retry,
            observer=events,
        )
        yield minter, site


def record_arrivals(sb: RunningSandbox) -> list[float]:
    """Times (sandbox clock) at which mints reach the sandbox's gateway, accepted or not."""
    gateway = sb.world.parts["gateway"]
    original = gateway.mint
    arrivals: list[float] = []

    def spy(*args: Any) -> Any:
        arrivals.append(sb.world.clock())
        return original(*args)

    gateway.mint = spy
    return arrivals


async def mint_all(minter: Minter, site: SiteConfig, users: list[str]) -> list[str]:
    tokens: list[str] = []

    async def one(user: str) -> None:
        tokens.append(await minter.token_for(site, user))

    async with asyncio.TaskGroup() as tg:
        for user in users:
            tg.create_task(one(user))
    return tokens


@pytest.mark.parametrize("failure", ["retry_after", "reset_header", "graphql_error"])
async def test_rate_limit_pauses_the_bucket_for_every_caller(
    start_sandbox: StartSandbox, tmp_path: Path, failure: Any
) -> None:
    """A limited mint, in each shape, pauses every caller: no mint reaches the sandbox before
    Retry-After (or the reset, or the policy's backoff) has passed, and every user still gets
    a token, the 429s spending no attempt."""
    config = dataclasses.replace(
        make_sandbox_config(), mint_limit=MintLimit(limit=2, window_s=1.0, failure=failure)
    )
    events = Events()
    users = [pattern_account(n) for n in range(5)]
    async with start_sandbox(config) as sb:
        arrivals = record_arrivals(sb)
        # The runner believes in 5 mints a second (one per 200 ms, far apart on loopback):
        # faster than the sandbox allows, so the sandbox must limit it.
        # One attempt only: a 429 that spent it would fail the mint.
        one_try = dataclasses.replace(RETRY, attempts=1)
        async with minter_for(sb, tmp_path, limit=5, window_s=1.0, retry=one_try,
                              events=events) as (m, site):
            tokens = await mint_all(m, site, users)
        limited = [e for e in sb.world.rate_limits if e.api == "gateway"]
    assert len(tokens) == 5
    assert sum(sb.world.mints_by_user.values()) == 5
    assert limited, "the sandbox never limited the runner: the test proves nothing"
    for event in limited:
        assert event.retry_after is not None
        if failure == "retry_after":
            wait: float = max(1, math.ceil(event.retry_after))
        elif failure == "reset_header":
            wait = math.ceil(event.at + event.retry_after) - event.at
        else:
            wait = RETRY.wait_initial_s
        early = [a - event.at for a in arrivals if event.at < a < event.at + wait]
        assert not early, f"mints arrived {early} s after a 429 asking for {wait} s"
    pauses = events.of(Pause)
    assert pauses and all(p.scope == "mint:dev" for p in pauses)
    shapes = {e.shape for e in events.of(MintRateLimited)}
    assert shapes == {{"retry_after": "retry_after", "reset_header": "reset",
                       "graphql_error": "graphql"}[failure]}


@asynccontextmanager
async def faulty_proxy(target: str, faults: list[str]) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback gateway that answers the first requests with ``faults`` (a status code as
    text, or "drop") and forwards the rest to ``target``. Yields its URL and a request log."""
    seen: list[str] = []
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append("fault" if len(seen) < len(faults) else "forwarded")
        if seen[-1] == "fault":
            fault = faults[len(seen) - 1]
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError
            return web.Response(status=int(fault), text="upstream trouble")
        headers = {"Authorization": request.headers["Authorization"]}
        async with session.post(target, data=await request.read(), headers=headers) as up:
            return web.Response(status=up.status, body=await up.read(),
                                content_type="application/json")

    app = web.Application()
    app.router.add_post("/graphql", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/graphql", seen
    finally:
        await runner.cleanup()
        await session.close()


async def test_5xx_and_resets_are_retried_by_the_mint_policy(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A 502, a dropped connection and a 503 are retried with backoff; the fourth try mints."""
    events = Events()
    async with (
        faulty_proxy(sandbox.gateway_url, ["502", "drop", "503"]) as (url, seen),
        minter_for(sandbox, tmp_path, gateway_url=url, retry=FAST_RETRY,
                   events=events) as (minter, site),
    ):
        token = await minter.token_for(site, pattern_account(1))
    assert seen == ["fault"] * 3 + ["forwarded"]
    assert sandbox.world.user_tokens[token].account_id == pattern_account(1)
    assert [e.attempt for e in events.of(MintRetry)] == [1, 2, 3]


async def test_transport_failures_outlasting_the_policy_raise(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """When every try fails, the minter gives up after the policy's attempts with
    TransportError, and no mint reached the sandbox."""
    async with (
        faulty_proxy(sandbox.gateway_url, ["500"] * 10) as (url, seen),
        minter_for(sandbox, tmp_path, gateway_url=url, retry=FAST_RETRY) as (minter, site),
    ):
        with pytest.raises(TransportError) as caught:
            await minter.token_for(site, pattern_account(1))
    assert caught.value.status == 500
    assert len(seen) == FAST_RETRY.attempts
    assert sum(sandbox.world.mints_by_user.values()) == 0


async def test_expired_system_token_pauses_until_a_fresh_one(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """With only an expired system token in the file, minting waits (saying so) and goes on
    with the fresh token once the file holds one; nothing fails."""
    now = sandbox.world.clock()
    expired = issue_system_token(sandbox.config, "dev", ttl_s=60, now=now - 120)
    events = Events()
    events.on_waiting = lambda: (tmp_path / "dev.token").write_text(
        issue_system_token(sandbox.config, "dev")
    )
    async with minter_for(sandbox, tmp_path, events=events, system_token=expired) as (m, site):
        token = await m.token_for(site, pattern_account(2))
    assert sandbox.world.user_tokens[token].account_id == pattern_account(2)
    assert events.of(SystemTokenWaiting)
    # The expired token was never sent: the gateway saw one mint and it succeeded.
    assert sandbox.world.mints_accepted["dev"] == 1


async def test_system_token_refused_by_the_gateway_is_read_again(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A 401 makes the minter drop the system token, read the source anew and try again."""
    forged = issue_system_token(dataclasses.replace(sandbox.config, signing_secret="wrong"), "dev")
    events = Events()
    events.on_waiting = lambda: (tmp_path / "dev.token").write_text(
        issue_system_token(sandbox.config, "dev")
    )
    async with minter_for(sandbox, tmp_path, events=events, system_token=forged) as (m, site):
        token = await m.token_for(site, pattern_account(3))
    assert sandbox.world.user_tokens[token].account_id == pattern_account(3)
    assert [e.reason for e in events.of(MintRetry)] == ["system token rejected"]
