"""A drain against the sandbox: an item sent once and now waiting out a 429 is not waited for."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import replace
from pathlib import Path

from runner.config.configfile import load_config
from runner.engine.shutdown import Shutdown
from runner.job.jobfile import load_job
from runner.journal import ItemState
from runner.sandbox.config import JiraLimits, MintLimit, SandboxConfig
from runner.sandbox.jira.state import JiraState
from runner.sandbox.testing import ACME_ACTIVE, StartSandbox, write_runner_config
from tests.e2e.harness import comments_by_item
from tests.engine.fairness_harness import Event, Events, run_engine, write_job

COMMENT = """\
[[actions]]
type = "comment.add"
issue = "MIG-1"
body = "from {n}"
"""
# A 429's wait is at most this long; the sandbox's clock moves past it before the resume.
PER_ISSUE_WINDOW_S = 30.0


async def test_a_drain_cancels_an_item_waiting_out_a_429_and_the_resume_does_it_once(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """SIGTERM while a sent comment waits out a 429 ends the run (143) with it started; the
    resume looks it up, sends it and each comment exists exactly once."""
    offset = [0.0]
    config = replace(
        sandbox_config,
        mint_limit=MintLimit(limit=10_000, window_s=60.0),
        # One write to an issue per 30 s: the second comment on MIG-1 gets a 429 whose
        # Retry-After lasts up to 30 s.
        jira_limits=JiraLimits(per_issue_30s=1),
    )
    async with start_sandbox(config, clock=lambda: time.time() + offset[0]) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb))
        rows = [{"n": str(n), "account_id": ACME_ACTIVE[n]} for n in range(2)]
        job = load_job(write_job(tmp_path, rows, COMMENT), cfg)
        shutdown = Shutdown()

        def drain_on_429(event: Event) -> None:
            if event.name == "jira.rate_limited" and not shutdown.draining:
                shutdown.request(signal.SIGTERM)  # once: a second one would force

        first = Events(hook=drain_on_429)
        async with asyncio.timeout(PER_ISSUE_WINDOW_S / 2):  # far less than the 429's wait
            stopped = await run_engine(tmp_path, cfg, job, first, shutdown)
        assert first.named("jira.rate_limited") and stopped.exit_code == 143
        assert {s: n for s, n in stopped.counts.items() if n} == {ItemState.DONE: 1,
                                                                  ItemState.STARTED: 1}
        jira: JiraState = sb.world.parts["jira"]
        assert sorted(comments_by_item(jira).values()) == [1]

        offset[0] = PER_ISSUE_WINDOW_S + 1  # the sandbox's per-issue window has passed
        resumed = await run_engine(tmp_path, cfg, job, Events())
        assert resumed.run_id == stopped.run_id and resumed.exit_code == 0
        assert {s: n for s, n in resumed.counts.items() if n} == {ItemState.DONE: 2}
        assert sorted(comments_by_item(jira).values()) == [1, 1]
        calls = sb.world.jira_calls
        assert calls["GET /rest/api/3/issue/{issueIdOrKey}/comment"] >= 1  # looked up first
