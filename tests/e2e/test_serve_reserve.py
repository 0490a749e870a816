"""A share of the quota kept for serve's runs: a migration that saturates the quota leaves it
unspent, and serve's nightly run, triggered meanwhile, spends it, paced by a clock of its own.

The sandbox's points quota is 60 per 2.5 s window (Atlassian's hour scaled down, as in
``test_shared_budgets``) and the config keeps 40% of it for serve: a `forge-runner run` process
may spend 58% of each window (2% is every run's margin), serve's run the rest. Every user needs
one property write (1 point). The migration is a real process; `serve` runs in the test's
process (its real server and engine), on the same journal and so the same budgets; on
PostgreSQL serve's run is shared by lanes, as every run there is. What each spent is counted
from the sandbox's arrival log, by whose token each write carried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.minting.sealed import SealKey
from runner.remote.server import serve_remote
from runner.sandbox.arrivals import JiraArrival
from runner.sandbox.config import ForgeTrigger, JiraLimits, MintLimit
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, StartSandbox, pattern_account
from tests.e2e.test_shared_budgets import (
    ACTION,
    journal_line,
    run_config,
    spawn_run,
    write_nightly_job,
    write_nightly_serve,
)
from tests.remote.helpers import after_jira_arrivals, forge_of, forge_sandbox_config

QUOTA, QUOTA_WINDOW_S, RESERVE, MARGIN = 60, 2.5, 0.4, 0.02
MIGRATION_USERS, NIGHTLY_USERS = 150, 40
# The migration's share of a window, in whole points (what the store lets it take).
MIGRATION_SHARE = math.floor(QUOTA * (1 - MARGIN - RESERVE))
NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly-sync", interval="day")
BUDGETS = f"""
[jira_budgets]
quota_points = {QUOTA}
quota_window_s = {QUOTA_WINDOW_S}
serve_reserve = {RESERVE}
"""


def write_jobs(folder: Path) -> Path:
    rows = "\n".join(f'{{"account_id": "{pattern_account(1000 + n)}"}}'
                     for n in range(MIGRATION_USERS))
    (folder / "migration.jsonl").write_text(rows + "\n")
    job = folder / "migration.toml"
    job.write_text('name = "migration"\nsite = "acme"\n[source]\njsonl = "migration.jsonl"\n'
                   + ACTION.format(job="migration"))
    write_nightly_job(folder, NIGHTLY_USERS)
    return job


def _window(arrival: JiraArrival) -> int:
    return math.floor(arrival.at / QUOTA_WINDOW_S)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_serve_spends_the_reserve_a_saturating_migration_leaves(
        tmp_path: Path, start_sandbox: StartSandbox, request: pytest.FixtureRequest,
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 40% kept for serve: in every window the migration's writes stay within its 58%
    share (34 of 60) and all writes within the quota; serve's nightly run, triggered once the
    migration is under way, spends beyond that share in some window and finishes while the
    migration still runs; no 429 of any kind and every property written once."""
    journal = journal_line(backend, request)
    sandbox = dataclasses.replace(
        forge_sandbox_config(triggers=(NIGHTLY,)),
        mint_limit=MintLimit(limit=1000, window_s=60.0, algorithm="sliding"),
        jira_limits=JiraLimits(quota_points=QUOTA, quota_window_s=QUOTA_WINDOW_S))
    job = write_jobs(tmp_path)
    monkeypatch.setenv("FORGE_RUNNER_TEST_SEAL_KEY", SealKey.generate().encoded())
    async with start_sandbox(sandbox) as sb:
        under_way = after_jira_arrivals(sb, 10)
        token_file = tmp_path / "system-token"
        token_file.write_text(issue_system_token(sb.config, "dev") + "\n")
        config_path = tmp_path / "run.toml"
        text = run_config(tmp_path, sb, token_file, journal)
        config_path.write_text(text.replace("[jira_budgets]\n",
                                            f"[jira_budgets]\nserve_reserve = {RESERVE}\n", 1))
        serve_path = write_nightly_serve(tmp_path, sb, journal, mint_limit=1000,
                                         mint_window_s=60.0, budgets=BUDGETS)
        async with serve_remote(load_config(serve_path)) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            migration = await spawn_run(tmp_path, config_path, job, 0)
            async with asyncio.timeout(60):
                await under_way.wait()
            await forge.trigger(NIGHTLY.key, "acme")
            done = await migration.wait(240.0)
            (outcome,) = await remote.desk.wait_for_outcomes(1)
        writes = [a for a in sb.world.jira_arrivals or [] if a.status is not None]
        refused = list(sb.world.rate_limits)
        props = sb.world.parts["jira"].site(CLOUD_A).user_properties

    assert done.code == 0, done.text[-2000:]
    assert outcome.exit_code == 0, outcome
    assert refused == [], refused
    assert Counter(p["shared"]["job"] for p in props.values()) == {
        "migration": MIGRATION_USERS, "nightly": NIGHTLY_USERS}
    nightly_accounts = {pattern_account(5000 + n) for n in range(NIGHTLY_USERS)}
    nightly = [a for a in writes if a.account in nightly_accounts]
    mine = [a for a in writes if a.account not in nightly_accounts]
    assert len(nightly) == NIGHTLY_USERS and len(mine) == MIGRATION_USERS
    every = Counter(_window(a) for a in writes)
    of_migration = Counter(_window(a) for a in mine)
    assert max(every.values()) <= QUOTA, every
    assert max(of_migration.values()) <= MIGRATION_SHARE, of_migration
    assert max(every.values()) > MIGRATION_SHARE, every  # serve spent the reserve
    assert max(a.at for a in nightly) < max(a.at for a in mine)

