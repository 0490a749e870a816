"""Answers that say less than they seem to: a 2xx that is not JSON, a Retry-After past the
deadline, a text error body holding a token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
from aiohttp import web

from runner.jira.client import JiraResponse, Ok, Transient, classify, error_messages
from runner.jira.executor import Done, Failed, Uncertain
from runner.logs.redact import register_secret
from runner.sandbox.testing import CLOUD_A
from tests.jira.harness import (
    FAST,
    StartSandbox,
    add_comment,
    arrivals,
    harness,
    put_property,
    rewriting_proxy,
    sandbox_config,
)

HTML = b"<html><body>Service temporarily unavailable (proxy)</body></html>"


@asynccontextmanager
async def html_proxy(target: str) -> AsyncIterator[str]:
    """A loopback proxy to ``target`` that answers every 2xx with the same status and an HTML
    page for a body, as a misbehaving proxy in front of Jira would."""
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            sent = {k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")}
            async with session.request(request.method, target + request.path_qs,
                                       data=body or None, headers=sent) as answer:
                data = await answer.read()
                if 200 <= answer.status < 300:
                    return web.Response(status=200, body=HTML, content_type="text/html")
                return web.Response(status=answer.status, body=data,
                                    content_type=answer.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


def test_a_2xx_that_is_not_json_is_transient() -> None:
    """A 200 with a text body is Transient, saying why; JSON or no body at all is Ok."""
    request = put_property("MIG-1")
    html = JiraResponse(200, {"Content-Type": "text/html"}, HTML.decode())
    assert classify(request, html, 0.0, site="acme") == Transient(
        200, None, "an answer that is not JSON")
    bodies: tuple[object, ...] = ({"id": "1"}, None, [], True)
    for body in bodies:
        assert isinstance(classify(request, JiraResponse(200, {}, body), 0.0, site="acme"), Ok)


async def test_create_answered_with_html_is_uncertain(start_sandbox: StartSandbox) -> None:
    """A comment POST answered 200 with HTML is uncertain (its ID is unknown), sent once;
    an idempotent PUT answered so is retried and fails when its attempts are spent."""
    async with (
        start_sandbox(sandbox_config()) as sb,
        html_proxy(sb.url) as proxy,
        harness(sb, acme_base=f"{proxy}/ex/jira/{CLOUD_A}") as h,
    ):
        sb.world.jira_arrivals = []
        created = await h.run(h.acme, add_comment("MIG-1"))
        put = await h.run(h.acme, put_property("MIG-1"))
    assert isinstance(created, Uncertain), created
    assert created.reason == "http 200 with an answer that is not JSON"
    assert len(arrivals(sb.world, CLOUD_A, where=lambda a: a.route.startswith("POST"))) == 1
    assert isinstance(put, Failed) and put.reason.startswith("attempts: http 200 with an answer")
    assert put.attempts == FAST.attempts


async def test_retry_after_past_the_deadline_says_so(start_sandbox: StartSandbox) -> None:
    """A 429 asking for an hour with a deadline seconds away fails at once with "deadline",
    saying the server asked for 3600 s; the next call of that scope is not sent at all."""
    policy = replace(FAST, wait_jitter_s=0.0)
    async with (
        start_sandbox(sandbox_config(quota_points=1)) as sb,
        rewriting_proxy(sb.url, "jira-quota-global-based", retry_after="3600") as proxy,
        harness(sb, policy=policy, acme_base=f"{proxy}/ex/jira/{CLOUD_A}") as h,
    ):
        sb.world.jira_arrivals = []
        assert isinstance(await h.run(h.acme, put_property("MIG-1")), Done)
        first = await h.run(h.acme, put_property("MIG-2"), deadline=time.time() + 30)
        second = await h.run(h.acme, put_property("MIG-3"), deadline=time.time() + 30)
    assert isinstance(first, Failed) and first.reason == "deadline"
    assert first.messages == ("the server asked to wait 3600 s (Retry-After), past the run's "
                              "deadline",)
    assert isinstance(second, Failed) and second.reason == "deadline"
    assert "paused for another" in second.messages[0]
    assert len(arrivals(sb.world, CLOUD_A)) == 2


def test_a_token_in_a_text_body_is_redacted_before_the_cut() -> None:
    """A token straddling the 300-character cut of a text error body leaves none of itself."""
    token = "opaqueUserToken" + "x" * 28
    register_secret(token)
    body = "e" * 280 + token + " more text"
    (message,) = error_messages(body)
    assert token[:8] not in message and "[REDACTED]" in message
    assert len(message) <= 300
