"""The shared budgets through the engine against the sandbox: what Jira shows is learned once,
stored, and paced by from then on (the engine with a budget store, as `run` and `serve` build
it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runner.budgets.store import open_store
from runner.config.configfile import load_config
from runner.engine.engine import Engine
from runner.job.jobfile import load_job
from runner.journal import ItemState, SqliteJournal
from runner.sandbox.config import JiraLimits
from runner.sandbox.jira.limits import PER_ISSUE_REASON
from runner.sandbox.testing import (
    StartSandbox,
    make_sandbox_config,
    pattern_account,
    write_runner_config,
)
from tests.engine.fairness_harness import Events, write_job

WRITES = 10
COMMENT = """
[[actions]]
type = "comment.add"
issue = "MIG-1"
body = "row {n}"
"""


async def test_a_tighter_per_issue_limit_is_learned_from_the_first_429(
        tmp_path: Path, start_sandbox: StartSandbox) -> None:
    """Jira allows 2 writes per 2 s on an issue where the config says 20: the first per-issue
    429 names the window (RateLimit-Policy), the spacing follows it for every later write, so
    10 writes to one issue meet at most 2 per-issue 429s (the one that taught it, and one that
    may have left before its answer came), and all are written. Without learning: 4 here."""
    limits = JiraLimits(per_issue_2s=2, per_issue_30s=100)
    config = dataclasses.replace(make_sandbox_config(), jira_limits=limits)
    rows = [{"account_id": pattern_account(n), "n": str(n)} for n in range(WRITES)]
    async with start_sandbox(config) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb, concurrency=4))
        job = load_job(write_job(tmp_path, rows, COMMENT), cfg)
        async with SqliteJournal(tmp_path / "journal.db") as journal, \
                open_store(tmp_path / "journal.db") as store:
            handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                            cfg.fingerprint, job.text)
            result = await Engine(cfg, job, journal, observer=Events(),
                                  budget_store=store).run(handle)
        refused = [e for e in sb.world.rate_limits if e.reason == PER_ISSUE_REASON]
    assert result.counts[ItemState.DONE] == WRITES
    assert 1 <= len(refused) <= 2, refused
