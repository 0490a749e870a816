"""The offlineUserAuthToken client over loopback: the request it sends and every outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.config.configfile import GatewayMessages
from runner.errors import GatewayError, GatewayRefusalError, RequestNotSentError, TransportError
from runner.minting.gateway import (
    MUTATION,
    ContextRefused,
    GatewayClient,
    Minted,
    MintRateLimited,
    SystemTokenRejected,
    UserRefused,
)
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import MintLimit
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    UNKNOWN_ACCOUNT,
    StartSandbox,
    make_sandbox_config,
    site_ari,
    workspace_ari,
)
from tests.minting.gatewayproxy import closed_port_url

ARI = workspace_ari(CLOUD_A)


@asynccontextmanager
async def client(url: str, timeout_s: float = 10.0) -> AsyncIterator[GatewayClient]:
    async with aiohttp.ClientSession() as session:
        yield GatewayClient(session, url, messages=GatewayMessages(), timeout_s=timeout_s)


def system_token(
    sb: RunningSandbox, environment: str = "dev", *, ttl_s: int | None = None,
    now: float | None = None,
) -> str:
    return issue_system_token(sb.config, environment, ttl_s=ttl_s, now=now)


def test_sends_the_documented_mutation(specs_dir: Path) -> None:
    """The mutation text is exactly the documented operation, field for field."""
    examples = json.loads((specs_dir / "offlineUserAuthToken-examples.json").read_text())
    assert examples["request"]["body"]["query"] == MUTATION


async def test_mint_success(sandbox: RunningSandbox) -> None:
    """An active user gets a Minted with the sandbox's token, ttl and gateway ids."""
    async with client(sandbox.gateway_url) as gw:
        outcome = await gw.mint(system_token(sandbox), ARI, ACME_ACTIVE[0])
    assert isinstance(outcome, Minted)
    assert sandbox.world.user_tokens[outcome.token].account_id == ACME_ACTIVE[0]
    assert outcome.ttl_s == 3600
    assert outcome.expires_at == outcome.received_at + 3600
    assert outcome.request_id and outcome.trace_id
    assert outcome.token not in repr(outcome)


@pytest.mark.parametrize(
    ("account", "words", "counter"),
    [
        (ACME_DEACTIVATED, "deactivated", "deactivated"),
        (ACME_NO_ACCESS, "does not have access", "no_access"),
        (UNKNOWN_ACCOUNT, "not found", "unknown_user"),
    ],
)
async def test_user_refusals(
    sandbox: RunningSandbox, account: str, words: str, counter: str
) -> None:
    """A user who can't be impersonated is a UserRefused with the gateway's reason and ids."""
    async with client(sandbox.gateway_url) as gw:
        outcome = await gw.mint(system_token(sandbox), ARI, account)
    assert isinstance(outcome, UserRefused)
    assert words in outcome.reason and account in outcome.reason
    assert outcome.ids.request_id
    assert sandbox.world.mints_refused[counter] == 1


async def test_wrong_context_ari_is_a_context_refusal(sandbox: RunningSandbox) -> None:
    """The site ARI gets 'Could not load permissions...', classified with the ARIs sent."""
    async with client(sandbox.gateway_url) as gw:
        outcome = await gw.mint(system_token(sandbox), site_ari(CLOUD_A), ACME_ACTIVE[0])
    assert isinstance(outcome, ContextRefused)
    assert outcome.context_aris == (site_ari(CLOUD_A),)
    assert outcome.message.startswith("Could not load permissions for app user")


async def test_no_impersonation_scopes_is_a_context_refusal(sandbox: RunningSandbox) -> None:
    """An environment whose scopes don't allow impersonation gets the context refusal too."""
    async with client(sandbox.gateway_url) as gw:
        outcome = await gw.mint(system_token(sandbox, "noimp"), ARI, ACME_ACTIVE[0])
    assert isinstance(outcome, ContextRefused)


async def test_expired_system_token_is_rejected(sandbox: RunningSandbox) -> None:
    """A 401 for an expired system token is SystemTokenRejected, with the gateway's ids."""
    expired = system_token(sandbox, ttl_s=10, now=sandbox.world.clock() - 100)
    async with client(sandbox.gateway_url) as gw:
        outcome = await gw.mint(expired, ARI, ACME_ACTIVE[0])
    assert isinstance(outcome, SystemTokenRejected)
    assert outcome.ids.request_id


@pytest.mark.parametrize(
    ("failure", "shape"),
    [("retry_after", "retry_after"), ("reset_header", "reset"), ("graphql_error", "graphql")],
)
async def test_rate_limit_shapes(start_sandbox: StartSandbox, failure: Any, shape: str) -> None:
    """Each way the sandbox says 'mint budget spent' is a MintRateLimited of its shape."""
    config = dataclasses.replace(
        make_sandbox_config(), mint_limit=MintLimit(limit=1, window_s=60.0, failure=failure)
    )
    async with start_sandbox(config) as sb, client(sb.gateway_url) as gw:
        token = system_token(sb)
        assert isinstance(await gw.mint(token, ARI, ACME_ACTIVE[0]), Minted)
        outcome = await gw.mint(token, ARI, ACME_ACTIVE[1])
        now = sb.world.clock()
    assert isinstance(outcome, MintRateLimited)
    assert outcome.shape == shape
    if shape == "retry_after":
        assert outcome.retry_after_s is not None and outcome.retry_after_s >= 59
    if shape == "reset":
        assert outcome.retry_after_s is None
        assert outcome.reset_at is not None and outcome.reset_at >= now + 59
    assert outcome.ids.request_id


# -- answers the sandbox never gives: a small loopback server plays the gateway -----------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def fake_gateway(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/graphql", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/graphql"
    finally:
        await runner.cleanup()


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers,
                            content_type="application/json")

    return handle


async def mint_via(handler: Handler, timeout_s: float = 10.0) -> object:
    async with fake_gateway(handler) as url, client(url, timeout_s) as gw:
        return await gw.mint("system-token-value", ARI, ACME_ACTIVE[0])


async def test_429_without_headers_is_a_backoff_shape() -> None:
    """A 429 with neither Retry-After nor X-RateLimit-Reset leaves the wait to the policy."""
    outcome = await mint_via(reply(429, {"errors": [{"message": "Too Many Requests"}]}))
    assert isinstance(outcome, MintRateLimited)
    assert outcome.shape == "backoff"
    assert outcome.retry_after_s is None and outcome.reset_at is None


async def test_top_level_rate_limit_error_in_a_200() -> None:
    """A 200 whose top-level GraphQL error is marked 429 is rate-limited, whatever its text."""
    body = {"errors": [{"message": "Slow down", "extensions": {"statusCode": 429}}]}
    outcome = await mint_via(reply(200, body, {"Retry-After": "7"}))
    assert isinstance(outcome, MintRateLimited)
    assert outcome.shape == "graphql" and outcome.retry_after_s == 7


async def test_5xx_is_a_transport_error_with_retry_after() -> None:
    """A 503 raises TransportError with its status and Retry-After."""
    with pytest.raises(TransportError) as caught:
        await mint_via(reply(503, "unavailable", {"Retry-After": "2"}))
    assert caught.value.status == 503 and caught.value.retry_after == 2


async def test_dropped_connection_is_a_transport_error() -> None:
    """A connection closed without an answer raises TransportError."""

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        raise ConnectionResetError

    with pytest.raises(TransportError):
        await mint_via(drop)


async def test_timeout_is_a_transport_error() -> None:
    """No answer within the timeout raises TransportError."""
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.Response()

    try:
        with pytest.raises(TransportError) as caught:
            await mint_via(hang, timeout_s=0.2)
        assert "timed out" in str(caught.value)
    finally:
        never.set()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html>not json</html>"),
        (200, {"data": {"offlineUserAuthToken": {"success": False, "errors": [
            {"message": "Something nobody has seen before"}], "authToken": None}}}),
        (200, {"data": {"offlineUserAuthToken": {"success": True, "errors": None,
                                                 "authToken": {"token": "t", "ttl": "soon"}}}}),
        (400, {"errors": [{"message": "Validation error of type FieldUndefined"}]}),
    ],
)
async def test_unclassifiable_answers_raise_gateway_error(status: int, body: object) -> None:
    """An answer that is neither a token nor a known refusal raises GatewayError."""
    with pytest.raises(GatewayError):
        await mint_via(reply(status, body))


async def test_an_echoed_system_token_never_reaches_the_error() -> None:
    """Even a server echoing the system token back can't put it in an exception message."""
    with pytest.raises(GatewayError) as caught:
        await mint_via(reply(400, "bad token: system-token-value"))
    assert "system-token-value" not in str(caught.value)


@pytest.mark.parametrize("ttl", ["0", "-5", "NaN", "Infinity", '"soon"', "null", None])
async def test_a_ttl_that_is_not_finite_and_positive_is_refused(ttl: str | None) -> None:
    """A success whose ttl is 0, negative, NaN, infinite, a string, null or missing raises a
    GatewayError naming the ttl, instead of a token that would never count as fresh."""
    auth = '{"token": "t"}' if ttl is None else '{"token": "t", "ttl": ' + ttl + "}"
    text = ('{"data": {"offlineUserAuthToken": {"success": true, "errors": null, '
            '"authToken": ' + auth + "}}}")
    with pytest.raises(GatewayError, match="bad ttl"):
        await mint_via(reply(200, text))


async def test_an_unrecognised_refusal_is_a_gateway_refusal_error() -> None:
    """A refusal whose message no [gateway_messages] pattern matches raises
    GatewayRefusalError, which the engine blocks rather than fails."""
    body = {"data": {"offlineUserAuthToken": {"success": False, "errors": [
        {"message": "Something nobody has seen before"}], "authToken": None}}}
    with pytest.raises(GatewayRefusalError, match="nobody has seen"):
        await mint_via(reply(200, body))


async def test_no_connection_is_request_not_sent() -> None:
    """A gateway URL nothing listens at raises RequestNotSentError: surely nothing was sent."""
    async with client(closed_port_url(), 5.0) as gw:
        with pytest.raises(RequestNotSentError, match="not sent"):
            await gw.mint("system-token-value", ARI, ACME_ACTIVE[0])
