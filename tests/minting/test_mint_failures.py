"""The minter when a mint fails for good: that user fails, the run's other users go on, and a
gateway that is unusable (unreachable, or failing user after user alike) blocks the
environment, ending every mint still waiting at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from runner.budgets.mint import MintBucket
from runner.config.configfile import EnvironmentConfig, GatewayMessages, SystemTokenSource
from runner.errors import (
    BlockedEnvironmentError,
    GatewayError,
    RequestNotSentError,
    SystemTokenError,
)
from runner.minting.gateway import GatewayClient
from runner.minting.minter import Minter
from runner.minting.system_tokens import SystemTokenProvider
from runner.minting.user_tokens import TokenCache
from runner.sandbox.app import RunningSandbox
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import ACME_ACTIVE, pattern_account
from tests.minting.gatewayproxy import closed_port_url, html_proxy
from tests.minting.test_minter import APP_ID, FAST_RETRY, acme


@asynccontextmanager
async def minter_at(
    sb: RunningSandbox, tmp_path: Path, url: str, *, block_after: int = 3,
    mint_limit: int = 1000, mint_window_s: float = 60.0, system_token: str | None = None,
) -> AsyncIterator[Minter]:
    token_file = tmp_path / "dev.token"
    token_file.write_text(issue_system_token(sb.config, "dev") if system_token is None
                          else system_token)
    source = SystemTokenSource(file=token_file, max_wait_s=0.0)
    env = EnvironmentConfig("dev", APP_ID, source, gateway_url=url, mint_limit=mint_limit,
                            mint_window_s=mint_window_s, block_after_failed_mints=block_after)
    async with aiohttp.ClientSession() as session:
        yield Minter(
            env,
            gateway=GatewayClient(session, url, messages=GatewayMessages(), timeout_s=10.0),
            system_tokens=SystemTokenProvider(source, "dev", poll_initial_s=0.05),
            bucket=MintBucket(env.bucket, env.mint_limit, env.mint_window_s),
            cache=TokenCache(),
            retry=FAST_RETRY,
        )


async def test_one_users_html_answer_fails_that_user_only(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A user whose mint is answered with an HTML page raises GatewayError naming it, again
    without a second mint; the other users get their tokens and the environment stays open."""
    bad = ACME_ACTIVE[0]
    async with html_proxy(sandbox.gateway_url, lambda user, _: user == bad) as proxy, \
            minter_at(sandbox, tmp_path, proxy.url) as minter:
        site = acme(sandbox)
        for _ in range(2):
            with pytest.raises(GatewayError, match="not a JSON object") as caught:
                await minter.token_for(site, bad)
            assert type(caught.value) is GatewayError
        for user in ACME_ACTIVE[1:]:
            assert await minter.token_for(site, user)
        assert minter.blocked is None
    assert proxy.mints[bad] == 1


async def test_an_unreachable_gateway_blocks_the_environment(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Nothing listening at gateway_url: the first user's mint raises RequestNotSentError once
    the policy is spent, the environment is blocked with a one-line diagnostic naming the URL,
    and the next user is blocked without a connection tried."""
    url = closed_port_url()
    async with minter_at(sandbox, tmp_path, url) as minter:
        site = acme(sandbox)
        with pytest.raises(RequestNotSentError):
            await minter.token_for(site, ACME_ACTIVE[0])
        blocked = minter.blocked
        assert blocked is not None
        assert url in blocked.diagnostic and "unreachable" in blocked.diagnostic
        assert "gateway_url" in blocked.diagnostic and "\n" not in blocked.diagnostic
        started = minter.bucket.started
        with pytest.raises(BlockedEnvironmentError):
            await minter.token_for(site, ACME_ACTIVE[1])
        assert minter.bucket.started == started == FAST_RETRY.attempts


async def test_users_failing_alike_block_and_waiters_take_no_slot(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """After one good mint, the gateway answers HTML to everyone: the third user in a row to
    fail blocks the environment, and the 30 users queued for the mint bucket are blocked at
    once, without each taking a slot of it first."""
    users = [pattern_account(n) for n in range(34)]
    outcomes: dict[str, str] = {}
    # Two mints a second: a queued user would take a slot every half second, far slower than
    # a loopback answer, so a block takes effect before the next slot comes round.
    async with html_proxy(sandbox.gateway_url, lambda _, n: n > 1) as proxy, \
            minter_at(sandbox, tmp_path, proxy.url, mint_limit=4, mint_window_s=2.0) as minter:
        site = acme(sandbox)
        assert await minter.token_for(site, users[0])  # the ARI is proven: no probe gate

        async def ask(user: str) -> None:
            try:
                await minter.token_for(site, user)
                outcomes[user] = "token"
            except BlockedEnvironmentError:
                outcomes[user] = "blocked"
            except GatewayError:
                outcomes[user] = "failed"

        async with asyncio.TaskGroup() as tg:
            for user in users[1:]:
                tg.create_task(ask(user))
        started = minter.bucket.started
    assert list(outcomes.values()).count("failed") == 3
    assert list(outcomes.values()).count("blocked") == 30
    assert sum(proxy.mints.values()) == 4
    # 1 good + 3 failed; a slot or two more only if the machine is so loaded that a loopback
    # answer took longer than the half second between slots. Each of 30 taking one: 34.
    assert started <= 6
    assert minter.blocked is not None and "3 users in a row" in minter.blocked.diagnostic


async def test_no_system_token_within_max_wait_blocks_the_environment(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """No system token within max_wait_s: the first mint raises SystemTokenError, the
    environment is blocked naming the token source's key, and later users are blocked."""
    async with minter_at(sandbox, tmp_path, sandbox.gateway_url, system_token="") as minter:
        site = acme(sandbox)
        with pytest.raises(SystemTokenError):
            await minter.token_for(site, ACME_ACTIVE[0])
        blocked = minter.blocked
        assert blocked is not None and "environments.dev.system_token" in blocked.diagnostic
        with pytest.raises(BlockedEnvironmentError):
            await minter.token_for(site, ACME_ACTIVE[1])
    assert sum(sandbox.world.mints_accepted.values()) == 0
