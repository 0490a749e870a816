"""The gateway's mint limit over HTTP: each failure shape with its headers, on a fake clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import MintAlgorithm, MintFailure, MintLimit, SandboxConfig
from runner.sandbox.gateway import RATE_LIMIT_MESSAGE
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    CLOUD_A,
    FakeClock,
    StartSandbox,
    make_sandbox_config,
    mint_request,
    workspace_ari,
)

T0 = 1_800_000_000.0


def limited(
    failure: MintFailure, algorithm: MintAlgorithm = "sliding", limit: int = 2
) -> SandboxConfig:
    mint = MintLimit(limit=limit, window_s=10.0, algorithm=algorithm, failure=failure)
    return dataclasses.replace(make_sandbox_config(), mint_limit=mint)


async def mint(
    sb: RunningSandbox, environment: str = "dev"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    token = issue_system_token(sb.config, environment, now=sb.world.clock())
    body = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0])
    async with (
        aiohttp.ClientSession() as session,
        session.post(sb.gateway_url, json=body, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        return r.status, dict(r.headers), await r.json()


async def test_retry_after_shape(start_sandbox: StartSandbox) -> None:
    """Over the limit: 429, Retry-After in whole seconds rounded up, JSON errors, gateway IDs."""
    clock = FakeClock(T0)
    async with start_sandbox(limited("retry_after"), clock=clock) as sb:
        assert (await mint(sb))[0] == 200
        clock.advance(2.5)
        assert (await mint(sb))[0] == 200
        status, headers, body = await mint(sb)
        assert status == 429
        assert headers["Retry-After"] == "8"  # 7.5 s until the first mint leaves the window
        assert "X-RateLimit-Reset" not in headers
        assert body["errors"][0]["message"] == RATE_LIMIT_MESSAGE
        assert body["errors"][0]["extensions"]["statusCode"] == 429
        assert body["extensions"]["gateway"]["request_id"]
        assert "data" not in body
        clock.advance(7.5)
        assert (await mint(sb))[0] == 200


async def test_reset_header_shape(start_sandbox: StartSandbox) -> None:
    """Over the limit: 429 with only X-RateLimit-Reset, ISO 8601 UTC, rounded up to the second."""
    clock = FakeClock(T0 + 0.25)
    async with start_sandbox(limited("reset_header", "fixed"), clock=clock) as sb:
        assert (await mint(sb))[0] == 200
        assert (await mint(sb))[0] == 200
        status, headers, body = await mint(sb)
        assert status == 429
        assert "Retry-After" not in headers
        expected = datetime.fromtimestamp(T0 + 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert headers["X-RateLimit-Reset"] == expected
        assert body["errors"][0]["message"] == RATE_LIMIT_MESSAGE


async def test_graphql_error_shape(start_sandbox: StartSandbox) -> None:
    """Over the limit: HTTP 200, success false, the rate-limit message, no token."""
    clock = FakeClock(T0)
    async with start_sandbox(limited("graphql_error", "token_bucket"), clock=clock) as sb:
        await mint(sb)
        await mint(sb)
        status, headers, body = await mint(sb)
        assert status == 200
        assert "Retry-After" not in headers
        assert body["data"]["offlineUserAuthToken"] == {
            "success": False,
            "errors": [{"message": RATE_LIMIT_MESSAGE}],
            "authToken": None,
        }
        clock.advance(5)  # a token bucket of 2 per 10 s refills one every 5 s
        assert (await mint(sb))[2]["data"]["offlineUserAuthToken"]["success"] is True


@pytest.mark.parametrize("failure", ["retry_after", "reset_header", "graphql_error"])
async def test_rate_limits_are_counted_and_logged(
    start_sandbox: StartSandbox, failure: MintFailure
) -> None:
    """Each refused mint counts as rejected for its client and logs a gateway 429 event."""
    clock = FakeClock(T0)
    async with start_sandbox(limited(failure, limit=1), clock=clock) as sb:
        await mint(sb)
        clock.advance(4)
        await mint(sb)
        await mint(sb)
        report = sb.report()
        assert report["mints"]["accepted"] == {"dev": 1}
        assert report["mints"]["rejected"] == {"dev": 2}
        assert report["rate_limits"]["by_reason"] == {"mint": 2}
        event = report["rate_limits"]["events"][0]
        assert (event["api"], event["scope"], event["at"]) == ("gateway", "dev", T0 + 4)
        assert event["retry_after"] == pytest.approx(6.0)


async def test_limit_is_per_oauth_client(start_sandbox: StartSandbox) -> None:
    """A client at its limit does not limit another: noimp still reaches its own refusal."""
    clock = FakeClock(T0)
    async with start_sandbox(limited("retry_after", limit=1), clock=clock) as sb:
        assert (await mint(sb))[0] == 200
        assert (await mint(sb))[0] == 429
        status, _, body = await mint(sb, "noimp")
        assert status == 200
        assert "Could not load permissions" in body["data"]["offlineUserAuthToken"]["errors"][0][
            "message"
        ]


async def test_default_limit_is_1000_per_minute(sandbox: RunningSandbox) -> None:
    """The default budget is Atlassian's: 1,000 mints per 60 s per client, sliding."""
    assert sandbox.config.mint_limit == MintLimit(1000, 60.0, "sliding", "retry_after")
    assert (await mint(sandbox))[0] == 200
