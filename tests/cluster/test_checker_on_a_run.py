"""The checker on a real run: one `forge-runner run` process, the sandbox logging arrivals in
the test's process (read back over HTTP, as a test in another process would), the PostgreSQL
journal read by ``tests.cluster.history``. A correct run counts zero everywhere, under budgets
tight enough that they bind."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest

from runner.sandbox.config import JiraLimits, MintLimit
from runner.sandbox.testing import StartSandbox, write_runner_config
from tests.cluster.checker import Expected, Limit, Limits, check
from tests.cluster.history import fetch_arrivals, read_items
from tests.e2e.harness import Process, _child_env, account, bulk_sandbox_config, write_csv

USERS, ROWS_PER_USER = 30, 3
MINTS, MINT_WINDOW_S = 20, 2.0
QUOTA, QUOTA_WINDOW_S = 60, 2.0
BUDGETS = f"""
[jira_budgets]
quota_points = {QUOTA}
quota_window_s = {QUOTA_WINDOW_S}
"""
# Two creates per row, so each item's effect carries its marker.
ACTIONS = """
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "first of {legacy_id}"

[[actions]]
type = "comment.add"
issue = "{issue}"
body = "second of {legacy_id}"
"""


def write_job(folder: Path) -> tuple[Path, list[Expected]]:
    """Rows user 0, 1, ..., 29, then again twice: each user's rows are far apart in the source."""
    rows = [{"legacy_id": f"L{n:04d}", "account_id": account(n % USERS),
             "issue": f"MIG-{n % USERS + 1}"} for n in range(USERS * ROWS_PER_USER)]
    write_csv(folder / "job.csv", rows)
    job = folder / "job.toml"
    job.write_text('name = "checked"\nsite = "acme"\nrow_key = "legacy_id"\n'
                   '[source]\ncsv = "job.csv"\n' + ACTIONS)
    expected = [Expected(f"{r['legacy_id']}#{i}", r["account_id"]) for r in rows for i in (0, 1)]
    return job, expected


@pytest.mark.slow
async def test_a_single_process_run_counts_zero_everywhere(
        tmp_path: Path, start_sandbox: StartSandbox, pg_url: str) -> None:
    """180 creates for 30 users, mints and the quota binding: nothing lost, duplicated, out of
    order or made with another user's token; every budget's peak within its limit in every
    window (and the quota used in more than one window, so it did bind)."""
    sandbox = dataclasses.replace(
        bulk_sandbox_config(issues=USERS), record_arrivals=True,
        mint_limit=MintLimit(limit=MINTS, window_s=MINT_WINDOW_S, algorithm="sliding"),
        jira_limits=JiraLimits(quota_points=QUOTA, quota_window_s=QUOTA_WINDOW_S))
    job, expected = write_job(tmp_path)
    async with start_sandbox(sandbox) as sb:
        config = write_runner_config(tmp_path, sb, mint_limit=MINTS, mint_window_s=MINT_WINDOW_S,
                                     concurrency=8, journal=pg_url, extra=BUDGETS)
        out, err = tmp_path / "run.out", tmp_path / "run.err"
        with out.open("wb") as out_f, err.open("wb") as err_f:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runner", "run", str(job), "--config", str(config),
                "--quiet", stdin=asyncio.subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                cwd=tmp_path, env=_child_env(), start_new_session=True)
        done = await Process(proc, out, err).wait()
        jira, mints = await fetch_arrivals(sb.url)
        refused = list(sb.world.rate_limits)
    assert done.code == 0, done.text
    assert refused == []
    journal = read_items(pg_url)
    assert len(journal) == len(expected) and {it.state for it in journal} == {"done"}
    limits = Limits(mints=Limit(MINTS, MINT_WINDOW_S),
                    quota=Limit(QUOTA, QUOTA_WINDOW_S, aligned=True),
                    per_issue=(Limit(20, 2.0), Limit(100, 30.0)))
    verdict = check(jira, mints, expected, journal=journal, limits=limits)
    assert verdict.counts() == dict.fromkeys(verdict.counts(), 0), verdict
    assert len(verdict.peaks) > 0 and verdict.peak("mints") > 0
    windows = {int(a.at // QUOTA_WINDOW_S) for a in jira if a.points}
    assert len(windows) > 1
