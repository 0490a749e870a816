"""The call executor over loopback: 401 re-mint, retries only when safe, Uncertain writes,
Jira's messages on permanent failures, the deadline, and no token in logs or events."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from runner.config.configfile import SiteConfig
from runner.jira.executor import Done, Failed, Uncertain
from runner.sandbox.config import Faults
from runner.sandbox.testing import CLOUD_A, CLOUD_B
from tests.jira.harness import (
    FAST,
    StartSandbox,
    add_comment,
    arrivals,
    get_issue,
    harness,
    myself,
    put_property,
    sandbox_config,
)


def faulty(**faults: float) -> Faults:
    return Faults(retry_after_503_s=0, only_cloud_ids=(CLOUD_A,), **faults)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_401_mints_once_more_then_succeeds(start_sandbox: StartSandbox) -> None:
    """A 401 drops the token and mints a new one; the retry with it succeeds."""
    async with start_sandbox(sandbox_config()) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, bad_tokens=1) as h:
            result = await h.run(h.acme, myself())
    assert isinstance(result, Done) and result.response.status == 200
    assert len(h.tokens.invalidated) == 1
    assert sum(h.tokens.issued.values()) == 2
    assert len(arrivals(sb.world, CLOUD_A)) == 2


async def test_second_401_fails(start_sandbox: StartSandbox) -> None:
    """A 401 after the fresh mint fails the call, with the failure category, after two sends."""
    async with start_sandbox(sandbox_config()) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, bad_tokens=2) as h:
            result = await h.run(h.acme, add_comment("MIG-1"))
    assert isinstance(result, Failed)
    assert (result.reason, result.status) == ("unauthorized", 401)
    assert result.messages == ("FAILURE_CLIENT_AUTH_MISMATCH",)
    assert len(arrivals(sb.world, CLOUD_A)) == 2


async def test_5xx_retried_for_idempotent_requests(start_sandbox: StartSandbox) -> None:
    """Seeded 500/502/503s on idempotent calls are retried to success, each retry one attempt."""
    config = replace(sandbox_config(), faults=faulty(http_500=0.1, http_502=0.1, http_503=0.1))
    async with start_sandbox(config) as sb, harness(sb, policy=replace(FAST, attempts=20)) as h:
        for n in range(10):
            await h.run(h.acme, put_property(f"MIG-{n % 5 + 1}", f"k{n}"))
    assert all(isinstance(r, Done) for r in h.results)
    retries = sum(r.attempts - 1 for r in h.results)
    assert retries == sum(sb.world.faults.values()) > 0
    assert len(h.observer.named("jira.retry")) == retries


async def test_5xx_exhausts_attempts(start_sandbox: StartSandbox) -> None:
    """An idempotent call failing every time is sent exactly ``attempts`` times, then fails."""
    config = replace(sandbox_config(), faults=faulty(http_500=1.0))
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb) as h:
            result = await h.run(h.acme, get_issue("MIG-1"))
    assert isinstance(result, Failed)
    assert (result.reason, result.status, result.attempts) == ("attempts: http 500", 500, 3)
    assert len(arrivals(sb.world, CLOUD_A)) == FAST.attempts


@pytest.mark.parametrize("fault", ["http_500", "http_503", "drop_connection"])
async def test_create_is_uncertain_not_resent(start_sandbox: StartSandbox, fault: str) -> None:
    """A create hit by a 5xx or a dropped connection is Uncertain at once: sent exactly once."""
    config = replace(sandbox_config(), faults=faulty(**{fault: 1.0}))
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb) as h:
            result = await h.run(h.acme, add_comment("MIG-1"))
    assert isinstance(result, Uncertain), result
    assert len(arrivals(sb.world, CLOUD_A)) == 1
    assert h.observer.named("jira.retry") == []


async def test_dropped_connection_retried_when_idempotent(start_sandbox: StartSandbox) -> None:
    """A dropped connection is retried for an idempotent call, up to the attempts."""
    config = replace(sandbox_config(), faults=faulty(drop_connection=1.0))
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb) as h:
            result = await h.run(h.acme, put_property("MIG-1"))
    assert isinstance(result, Failed) and result.reason.startswith("attempts: ")
    assert result.status is None
    assert len(arrivals(sb.world, CLOUD_A)) == FAST.attempts


async def test_timeout_retried_when_idempotent_uncertain_for_create(
    start_sandbox: StartSandbox,
) -> None:
    """An answer slower than the timeout is retried for a read and Uncertain for a create."""
    config = replace(sandbox_config(), faults=faulty(latency_ms_min=400, latency_ms_max=400))
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, timeout_s=0.1, policy=replace(FAST, attempts=2)) as h:
            read = await h.run(h.acme, get_issue("MIG-1"))
            create = await h.run(h.acme, add_comment("MIG-1"))
    assert isinstance(read, Failed) and "timed out" in read.reason and read.attempts == 2
    assert isinstance(create, Uncertain) and "timed out" in create.reason
    assert len(arrivals(sb.world, CLOUD_A)) == 3


async def test_connection_refused_is_safe_to_resend_a_create(start_sandbox: StartSandbox) -> None:
    """A create whose connection was refused never left: it is retried, never Uncertain."""
    async with start_sandbox(sandbox_config()) as sb, harness(sb) as h:
        nowhere = SiteConfig("nowhere", CLOUD_A, "i", "dev",
                             f"http://127.0.0.1:{closed_port()}/ex/jira/{CLOUD_A}", "ari")
        result = await h.run(nowhere, add_comment("MIG-1"))
    assert isinstance(result, Failed) and result.attempts == FAST.attempts
    assert result.reason.startswith("attempts: not sent")
    assert len(h.observer.named("jira.retry")) == FAST.attempts - 1


async def test_permanent_errors_carry_jira_messages(start_sandbox: StartSandbox) -> None:
    """400 and 404 fail at once, sent once, with Jira's errorMessages/errors as messages."""
    async with start_sandbox(sandbox_config()) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb) as h:
            missing = await h.run(h.acme, get_issue("NOPE-9"))
            invalid = await h.run(h.acme, add_comment("MIG-1", body={"body": "plain text"}))
    assert isinstance(missing, Failed) and (missing.reason, missing.status) == ("http 404", 404)
    assert missing.messages and any("NOPE-9" in m or "not exist" in m for m in missing.messages)
    assert isinstance(invalid, Failed) and invalid.status == 400 and invalid.messages
    assert len(arrivals(sb.world, CLOUD_A)) == 2
    assert sb.world.parts["jira"].site(CLOUD_A).find("MIG-1").comments == []


async def test_deadline_bounds_deferrals(start_sandbox: StartSandbox) -> None:
    """A 429 whose pause outlasts the deadline fails the call with "deadline", not resent."""
    async with start_sandbox(sandbox_config(quota_points=1, quota_window_s=3600.0)) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb) as h:
            await h.run(h.acme, put_property("MIG-1"))
            result = await h.run(h.acme, put_property("MIG-2"), deadline=time.time() + 0.5)
            other = await h.run(h.globex, put_property("GLX-1"), deadline=time.time() + 0.5)
    assert isinstance(result, Failed)
    assert (result.reason, result.deferrals, result.attempts) == ("deadline", 1, 0)
    assert isinstance(other, Failed) and other.reason == "deadline"
    assert len(arrivals(sb.world, CLOUD_A)) == 2
    assert arrivals(sb.world, CLOUD_B) == []


async def test_no_token_in_logs_or_events(start_sandbox: StartSandbox) -> None:
    """Tokens appear in no log entry, event, result or error, through 401s, 429s and faults."""
    config = replace(sandbox_config(burst_get_post=2), faults=faulty(http_500=0.3))
    async with start_sandbox(config) as sb:
        with capture_logs() as logs:
            async with harness(sb, bad_tokens=1, policy=replace(FAST, attempts=10)) as h:
                for _ in range(4):
                    await h.run(h.acme, get_issue("MIG-1"))
                await h.run(h.acme, add_comment("MIG-1"))
    tokens = [*sb.world.user_tokens, "not-a-token-0"]
    said = repr(logs) + repr(h.observer.events) + repr(h.results)
    assert logs and h.observer.events
    assert not any(t in said for t in tokens)

