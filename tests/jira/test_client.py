"""The Jira client over loopback, and what each kind of answer is classified as."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from runner.errors import LaneLostError, RequestNotSentError, TransportError
from runner.jira.client import (
    LAST_CHECK,
    JiraClient,
    JiraResponse,
    Ok,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
    classify,
    error_messages,
    last_check_trace,
)
from runner.jira.ratelimit import Scope
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import Faults
from runner.sandbox.testing import CLOUD_A
from tests.jira.harness import (
    ACME_USER,
    ISSUE_T,
    PROPERTY_T,
    StartSandbox,
    get_issue,
    myself,
    put_property,
    sandbox_config,
    site,
)

NOW = 1_790_000_000.0


def answer(status: int, headers: dict[str, str] | None = None, body: object = None
           ) -> JiraResponse:
    return JiraResponse(status, CIMultiDictProxy(CIMultiDict(headers or {})), body)


def test_2xx_is_ok() -> None:
    """Any 2xx, with or without a body, is Ok."""
    assert isinstance(classify(myself(), answer(200, body={}), NOW, site="acme"), Ok)
    assert isinstance(classify(put_property("MIG-1"), answer(204), NOW, site="acme"), Ok)


def test_429_carries_scope_and_times() -> None:
    """A 429 is RateLimited with the reason's scope and Retry-After / reset from its headers."""
    out = classify(
        put_property("MIG-1"),
        answer(429, {"retry-after": "3", "x-ratelimit-reset": "2027-01-15T08:00Z",
                     "RateLimit-Reason": "jira-per-issue-on-write"}),
        NOW, site="acme",
    )
    assert isinstance(out, RateLimited)
    assert out.scope == Scope.issue("acme", "MIG-1")
    assert (out.reason, out.retry_after_s) == ("jira-per-issue-on-write", 3.0)
    assert out.reset_at == datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()


def test_edge_429_pauses_the_site() -> None:
    """A 429 with only X-Failure-Category limits the whole site."""
    out = classify(get_issue("MIG-1"),
                   answer(429, {"X-Failure-Category": "FAILURE CLIENT RATE LIMITED"}),
                   NOW, site="acme")
    assert isinstance(out, RateLimited)
    assert out.scope == Scope.of_site("acme") and out.info.edge and out.reason is None


def test_401_is_unauthorized_with_category() -> None:
    """A 401 is Unauthorized and keeps its x-failure-category."""
    out = classify(myself(), answer(401, {"x-failure-category": "FAILURE_CLIENT_AUTH_EXPIRED"}),
                   NOW, site="acme")
    assert out == Unauthorized("FAILURE_CLIENT_AUTH_EXPIRED")


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_other_4xx_are_permanent_with_messages(status: int) -> None:
    """400/403/404/409 are Permanent, with errorMessages then errors as messages."""
    body = {"errorMessages": ["Issue does not exist"], "errors": {"summary": "required"}}
    out = classify(get_issue("X-1"), answer(status, body=body), NOW, site="acme")
    assert out == Permanent(status, ("Issue does not exist", "summary: required"))


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (502, None), (503, 2.0),
                                                     (408, None)])
def test_5xx_and_408_are_transient(status: int, retry_after: float | None) -> None:
    """5xx and 408 are Transient; a 503's Retry-After is kept."""
    headers = {"Retry-After": "2"} if retry_after else {}
    out = classify(get_issue("MIG-1"), answer(status, headers, "<html>"), NOW, site="acme")
    assert out == Transient(status, retry_after)


def test_error_messages_from_text_and_nothing() -> None:
    """A plain-text error body is its own message (cut short); an empty body has none."""
    assert error_messages("  Bad Gateway  ") == ("Bad Gateway",)
    assert error_messages("x" * 1000) == ("x" * 300,)
    assert error_messages(None) == ()
    assert error_messages({"message": "Oops"}) == ("Oops",)


# ---- the client over loopback -----------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_send_returns_status_headers_and_json(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    """A call goes out with the user's token and comes back with JSON and case-free headers."""
    token = sandbox.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
    acme = site("acme", CLOUD_A, sandbox.jira_base(CLOUD_A) + "/")
    got = await JiraClient(http, timeout_s=5).send(acme, token, myself())
    assert got.status == 200 and got.body["accountId"] == ACME_USER
    assert got.headers["x-ratelimit-limit"] == got.headers["X-RateLimit-Limit"]
    assert token not in repr(got)


async def test_send_query_and_body(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    """Query parameters and the JSON body reach Jira; an empty answer's body is None."""
    token = sandbox.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
    acme = site("acme", CLOUD_A, sandbox.jira_base(CLOUD_A))
    client = JiraClient(http, timeout_s=5)
    put = await client.send(acme, token, put_property("MIG-1", "colour", {"c": "red"}))
    assert 200 <= put.status < 300
    read = replace(get_issue("MIG-1"), path="/rest/api/3/issue/MIG-1/properties/colour",
                   template=ISSUE_T + "/properties/{propertyKey}")
    got = await client.send(acme, token, read)
    assert got.body["value"] == {"c": "red"}
    fields = await client.send(acme, token, replace(get_issue("MIG-1"),
                                                    query={"fields": "summary"}))
    assert set(fields.body["fields"]) == {"summary"}


async def test_a_body_is_not_written_when_the_last_check_fails_as_it_goes(
    sandbox: RunningSandbox,
) -> None:
    """The lease's last check runs again as a request's body is written: one that passed when
    the connection was ready and fails at the body (a process stopped in between, woken past
    its lease) raises the check's error, and nothing of the request reaches Jira; the next
    request, its checks passing, goes out on the same session."""
    token = sandbox.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
    acme = site("acme", CLOUD_A, sandbox.jira_base(CLOUD_A))
    sandbox.world.jira_arrivals = []
    checks: list[str] = []

    def last_check() -> None:
        checks.append("checked")
        if len(checks) == 2:  # the first request's second check: its body
            raise LaneLostError("r-1", "acme", ACME_USER, "its lease ended")

    async with aiohttp.ClientSession(trace_configs=[last_check_trace()]) as http:
        client = JiraClient(http, timeout_s=5)
        checking = LAST_CHECK.set(last_check)
        try:
            with pytest.raises(LaneLostError):
                await client.send(acme, token, put_property("MIG-1", "colour", {"c": "red"}))
            assert sandbox.world.jira_arrivals == []
            put = await client.send(acme, token, put_property("MIG-1", "colour", {"c": "blue"}))
        finally:
            LAST_CHECK.reset(checking)
    assert 200 <= put.status < 300 and len(checks) == 4
    assert [a.route for a in sandbox.world.jira_arrivals] == [f"PUT {PROPERTY_T}"]
    props = sandbox.world.parts["jira"].site(CLOUD_A).issues["MIG-1"].properties
    assert props["colour"] == {"c": "blue"}


async def test_non_json_answer_is_text(start_sandbox: StartSandbox,
                                       http: aiohttp.ClientSession) -> None:
    """A 502 from an edge comes back as its text."""
    config = replace(sandbox_config(), faults=Faults(http_502=1.0))
    async with start_sandbox(config) as sb:
        token = sb.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
        got = await JiraClient(http, timeout_s=5).send(
            site("acme", CLOUD_A, sb.jira_base(CLOUD_A)), token, myself())
    assert got.status == 502 and got.body == "Bad Gateway"


async def test_refused_connection_is_not_sent(http: aiohttp.ClientSession) -> None:
    """Nothing listening: RequestNotSentError, naming the call and not the token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = site("acme", CLOUD_A, f"http://127.0.0.1:{port}/ex/jira/{CLOUD_A}")
    with pytest.raises(RequestNotSentError) as caught:
        await JiraClient(http, timeout_s=5).send(nowhere, "secret-token-123", myself())
    assert "GET /rest/api/3/myself on acme" in str(caught.value)
    assert "secret-token-123" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None


async def test_timeout_and_drop_are_transport_errors(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    """A slow answer and a dropped connection raise TransportError, not 'not sent'."""
    slow = replace(sandbox_config(), faults=Faults(latency_ms_min=300, latency_ms_max=300))
    async with start_sandbox(slow) as sb:
        token = sb.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
        with pytest.raises(TransportError) as caught:
            await JiraClient(http, timeout_s=0.05).send(
                site("acme", CLOUD_A, sb.jira_base(CLOUD_A)), token, myself())
    assert not isinstance(caught.value, RequestNotSentError)
    assert "timed out" in caught.value.reason
    dropping = replace(sandbox_config(), faults=Faults(drop_connection=1.0))
    async with start_sandbox(dropping) as sb:
        sb.world.jira_arrivals = []
        token = sb.world.issue_user_token(CLOUD_A, ACME_USER, "dev", 600)
        with pytest.raises(TransportError) as caught:
            await JiraClient(http, timeout_s=5).send(
                site("acme", CLOUD_A, sb.jira_base(CLOUD_A)), token, myself())
        assert len(sb.world.jira_arrivals) == 1, "the client itself never sends twice"
    assert not isinstance(caught.value, RequestNotSentError)
