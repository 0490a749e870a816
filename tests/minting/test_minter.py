"""The minter against the sandbox: one mint per user, single flight, refusals, blocking, logs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from runner.budgets.mint import MintBucket, MintBuckets
from runner.config.configfile import (
    Config,
    EnvironmentConfig,
    GatewayMessages,
    RetryPolicy,
    RunnerSettings,
    SiteConfig,
    SystemTokenSource,
)
from runner.errors import BlockedEnvironmentError, UserRefusedError
from runner.events import MintContextRefused, MintUserRefused
from runner.minting.gateway import GatewayClient
from runner.minting.minter import Minter
from runner.minting.system_tokens import SystemTokenProvider
from runner.minting.user_tokens import TokenCache
from runner.sandbox.app import RunningSandbox
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    INSTALLATION_A,
    UNKNOWN_ACCOUNT,
    pattern_account,
    site_ari,
    workspace_ari,
)
from tests.fakes import Events

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
FAST_RETRY = RetryPolicy(attempts=4, wait_initial_s=0.05, wait_max_s=0.2, wait_jitter_s=0.0,
                         deadline_s=60.0)


def acme(sb: RunningSandbox, environment: str = "dev", ari: str | None = None) -> SiteConfig:
    return SiteConfig("acme", CLOUD_A, INSTALLATION_A, environment, sb.jira_base(CLOUD_A),
                      ari or workspace_ari(CLOUD_A))


@asynccontextmanager
async def minter_for(
    sb: RunningSandbox,
    tmp_path: Path,
    *,
    environment: str = "dev",
    events: Events | None = None,
    system_token: str | None = None,
) -> AsyncIterator[Minter]:
    token_file = tmp_path / f"{environment}.token"
    token_file.write_text(system_token or issue_system_token(sb.config, environment))
    source = SystemTokenSource(file=token_file, max_wait_s=30.0)
    env = EnvironmentConfig(environment, APP_ID, source, gateway_url=sb.gateway_url)
    async with aiohttp.ClientSession() as session:
        yield Minter(
            env,
            gateway=GatewayClient(session, sb.gateway_url, messages=GatewayMessages(),
                                  timeout_s=10.0),
            system_tokens=SystemTokenProvider(source, environment, observer=events,
                                              poll_initial_s=0.05, poll_max_s=0.2),
            bucket=MintBucket(env.bucket, env.mint_limit, env.mint_window_s, observer=events),
            cache=TokenCache(),
            retry=FAST_RETRY,
            observer=events,
        )


async def test_one_mint_per_user_across_many_calls(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """20 users asked for 5 times each, concurrently: exactly one mint per user reaches Jira's
    gateway, and every call gets a token the sandbox knows as that user's."""
    users = [pattern_account(n) for n in range(20)]
    got: dict[str, set[str]] = {u: set() for u in users}
    async with minter_for(sandbox, tmp_path) as minter:
        site = acme(sandbox)

        async def ask(user: str) -> None:
            got[user].add(await minter.token_for(site, user))

        async with asyncio.TaskGroup() as tg:
            for _ in range(5):
                for user in users:
                    tg.create_task(ask(user))
    world = sandbox.world
    assert {u: world.mints_by_user[(CLOUD_A, u)] for u in users} == {u: 1 for u in users}
    for user, tokens in got.items():
        (token,) = tokens
        assert world.user_tokens[token].account_id == user


async def test_single_flight_under_50_concurrent_callers(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """50 callers asking at once for one user make one mint and share its token."""
    tokens: list[str] = []
    async with minter_for(sandbox, tmp_path) as minter:
        site = acme(sandbox)

        async def ask() -> None:
            tokens.append(await minter.token_for(site, ACME_ACTIVE[0]))

        async with asyncio.TaskGroup() as tg:
            for _ in range(50):
                tg.create_task(ask())
    assert len(tokens) == 50 and len(set(tokens)) == 1
    assert sandbox.world.mints_by_user[(CLOUD_A, ACME_ACTIVE[0])] == 1


async def test_jira_401_invalidation_mints_once_more(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """After invalidate (a Jira 401), the next call mints a new token, once."""
    async with minter_for(sandbox, tmp_path) as minter:
        site = acme(sandbox)
        first = await minter.token_for(site, ACME_ACTIVE[0])
        assert minter.invalidate(site, ACME_ACTIVE[0], first)
        second = await minter.token_for(site, ACME_ACTIVE[0])
        assert await minter.token_for(site, ACME_ACTIVE[0]) == second != first
    assert sandbox.world.mints_by_user[(CLOUD_A, ACME_ACTIVE[0])] == 2


@pytest.mark.parametrize(
    ("account", "counter"),
    [(ACME_DEACTIVATED, "deactivated"), (ACME_NO_ACCESS, "no_access"),
     (UNKNOWN_ACCOUNT, "unknown_user")],
)
async def test_user_refusal_is_raised_and_remembered(
    sandbox: RunningSandbox, tmp_path: Path, account: str, counter: str
) -> None:
    """A refused user raises UserRefusedError with the reason, and is never minted again."""
    events = Events()
    async with minter_for(sandbox, tmp_path, events=events) as minter:
        site = acme(sandbox)
        for _ in range(3):
            with pytest.raises(UserRefusedError) as caught:
                await minter.token_for(site, account)
            assert caught.value.account_id == account and caught.value.request_id
        # Other users are not affected.
        await minter.token_for(site, ACME_ACTIVE[0])
    assert sandbox.world.mints_refused[counter] == 1
    assert [e.account for e in events.of(MintUserRefused)] == [account]


@pytest.mark.parametrize("environment", ["dev", "noimp"])
async def test_context_refusal_blocks_the_environment_at_the_first(
    sandbox: RunningSandbox, tmp_path: Path, environment: str
) -> None:
    """A wrong context ARI (dev) or missing impersonation scopes (noimp): 50 concurrent
    callers all get BlockedEnvironmentError, and exactly one mint reached the gateway."""
    ari = site_ari(CLOUD_A) if environment == "dev" else None
    events = Events()
    errors: list[BlockedEnvironmentError] = []
    async with minter_for(sandbox, tmp_path, environment=environment, events=events) as minter:
        site = acme(sandbox, environment, ari)

        async def ask(n: int) -> None:
            try:
                await minter.token_for(site, pattern_account(n))
            except BlockedEnvironmentError as exc:
                errors.append(exc)

        async with asyncio.TaskGroup() as tg:
            for n in range(50):
                tg.create_task(ask(n))
        with pytest.raises(BlockedEnvironmentError):
            await minter.token_for(site, ACME_ACTIVE[0])
    assert len(errors) == 50
    assert sum(sandbox.world.mints_refused.values()) == 1
    assert sum(sandbox.world.mints_accepted.values()) == 0
    diagnostic = errors[0].diagnostic
    for needle in (site.context_ari, "ARI form", "allowImpersonation: true", "forge deploy",
                   "forge install --upgrade", "Could not load permissions"):
        assert needle in diagnostic
    if environment == "dev":
        assert f"expected {workspace_ari(CLOUD_A)}" in diagnostic
    assert events.count(MintContextRefused) == 1


async def test_minter_from_config_shares_named_buckets(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """from_config builds a working minter; environments naming one bucket share it."""
    token_file = tmp_path / "token"
    token_file.write_text(issue_system_token(sandbox.config, "dev"))
    source = SystemTokenSource(file=token_file)
    envs = {
        name: EnvironmentConfig(name, APP_ID, source, gateway_url=sandbox.gateway_url,
                                mint_bucket="shared")
        for name in ("dev", "dev2")
    }
    config = Config(path=tmp_path / "c.toml", runner=RunnerSettings(), environments=envs,
                    sites={"acme": acme(sandbox)})
    buckets = MintBuckets()
    async with aiohttp.ClientSession() as session:
        minter = Minter.from_config(config, "dev", session=session, buckets=buckets)
        other = Minter.from_config(config, "dev2", session=session, buckets=buckets)
        assert minter.bucket is other.bucket
        token = await minter.token_for(config.sites["acme"], ACME_ACTIVE[1])
    assert sandbox.world.user_tokens[token].account_id == ACME_ACTIVE[1]


async def test_no_token_in_logs_or_errors(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Across a refused system token (401), success, user refusals and a block, no system or
    user token appears in any captured log event or exception text; request ids do."""
    forged_config = dataclasses.replace(sandbox.config, signing_secret="not-the-sandbox-secret")
    forged = issue_system_token(forged_config, "dev")
    good = issue_system_token(sandbox.config, "dev")
    events = Events()
    events.on_waiting = lambda: (tmp_path / "dev.token").write_text(good)
    seen_errors: list[str] = []
    with capture_logs() as logs:
        async with minter_for(sandbox, tmp_path, events=events, system_token=forged) as minter:
            site = acme(sandbox)
            await minter.token_for(site, ACME_ACTIVE[0])
            for account in (ACME_DEACTIVATED, UNKNOWN_ACCOUNT):
                try:
                    await minter.token_for(site, account)
                except UserRefusedError as exc:
                    seen_errors.append(repr(exc) + str(exc))
            blocked_site = dataclasses.replace(site, context_ari=site_ari(CLOUD_A))
            try:
                await minter.token_for(blocked_site, ACME_ACTIVE[1])
            except BlockedEnvironmentError as exc:
                seen_errors.append(repr(exc) + str(exc))
    secrets = [*sandbox.world.user_tokens, forged, good]
    assert len(secrets) == 3 and len(seen_errors) == 3
    text = "\n".join([repr(e) for e in logs] + seen_errors)
    for secret in secrets:
        assert secret not in text
    events_seen = [e["event"] for e in logs]
    assert "runner.mint.system_token_rejected" in events_seen
    assert "runner.mint.context_refused" in events_seen
    assert any(e["event"] == "runner.mint.ok" and e["request_id"] for e in logs)
