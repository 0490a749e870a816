"""Trial runs (`run --limit N`, `run --only KEY,...`): the real command against a served sandbox.
A trial is a run of its own: the same trial again has nothing to do, and the job's full run
still does every row."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import MIGRATION_ACTIONS
from tests.e2e.harness import (
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
)

pytestmark = pytest.mark.slow


def _rows(n: int, *, missing_issue: int | None = None) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{i:03d}", "account_id": account(i % 3),
             "issue": "MIG-999" if i == missing_issue else f"MIG-{i % 4 + 1}"}
            for i in range(n)]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(4), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox) -> Rehearsal:
    return Rehearsal.start(tmp_path, sandbox, concurrency=3)


def _said(text: str) -> str:
    return " ".join(text.split())


async def test_limit_runs_the_first_rows_as_a_run_of_their_own(rehearsal: Rehearsal) -> None:
    """`run --limit 2` does the first two rows only (4 items) in a run named as the trial; the
    same trial again says nothing to do and sends nothing; the job's full run then starts a run
    of its own and does every row, the trial's two included."""
    job = rehearsal.write_job("migration", _rows(5), MIGRATION_ACTIONS)
    trial = await rehearsal.cli("run", job, "--limit", "2")
    assert trial.code == 0, trial.text
    assert "of migration (trial: --limit 2): 4 items" in _said(trial.out)
    assert ("trial (--limit 2): a run of its own; the job's full run does every row, these "
            "too") in _said(trial.out)
    assert set(comments_by_item(rehearsal.jira)) == {"LEG-000#0", "LEG-001#0"}
    trial_id = run_id_of(trial)

    again = await rehearsal.cli("run", job, "--limit", "2")
    assert again.code == 0, again.text
    assert (f"nothing to do: every row of migration (trial: --limit 2) was done by run "
            f"{trial_id}") in _said(again.out)
    assert sum(comments_by_item(rehearsal.jira).values()) == 2

    full = await rehearsal.cli("run", job)
    assert full.code == 0, full.text
    assert run_id_of(full) != trial_id
    assert "of migration: 10 items" in _said(full.out)
    comments = comments_by_item(rehearsal.jira)
    assert comments == {"LEG-000#0": 2, "LEG-001#0": 2, "LEG-002#0": 1, "LEG-003#0": 1,
                        "LEG-004#0": 1}


async def test_only_runs_the_rows_named(rehearsal: Rehearsal) -> None:
    """`run --only LEG-003,LEG-001` does those two rows and no other; `status` lists the run
    under the trial's name."""
    job = rehearsal.write_job("migration", _rows(5), MIGRATION_ACTIONS)
    trial = await rehearsal.cli("run", job, "--only", "LEG-003,LEG-001")
    assert trial.code == 0, trial.text
    assert set(comments_by_item(rehearsal.jira)) == {"LEG-001#0", "LEG-003#0"}
    status = await rehearsal.cli("status", "--format", "json")
    names = [run["job"] for run in json.loads(status.out)["runs"]]
    assert names == ["migration (trial: --only LEG-003,LEG-001)"]


async def test_only_with_a_key_no_row_has_is_refused(rehearsal: Rehearsal) -> None:
    """`--only LEG-001,LEG-404` exits 2 with one line naming the missing key and what a key is;
    nothing is sent and no run is journaled."""
    job = rehearsal.write_job("migration", _rows(3), MIGRATION_ACTIONS)
    refused = await rehearsal.cli("run", job, "--only", "LEG-001,LEG-404")
    assert refused.code == 2, refused.text
    lines = [line for line in refused.err.splitlines() if line.startswith("forge-runner: ")]
    assert len(lines) == 1 and "Traceback" not in refused.err
    assert "--only: no row of" in lines[0] and "has the key LEG-404;" in lines[0]
    assert "'legacy_id'" in lines[0]
    assert comments_by_item(rehearsal.jira) == {}
    status = await rehearsal.cli("status", "--format", "json")
    assert json.loads(status.out)["runs"] == []


async def test_retry_of_a_trial_run_stays_inside_the_trial(rehearsal: Rehearsal) -> None:
    """`retry RUN` of a trial whose row failed works on the trial's rows only: the run's total
    stays the trial's 4 items, and no row outside it gets a comment."""
    job = rehearsal.write_job("migration", _rows(5, missing_issue=1), MIGRATION_ACTIONS)
    trial = await rehearsal.cli("run", job, "--limit", "2")
    assert trial.code == 1, trial.text
    run_id = run_id_of(trial)
    retried = await rehearsal.cli("retry", run_id)
    assert retried.code == 1, retried.text
    assert "of migration (trial: --limit 2)" in _said(retried.out)
    assert set(comments_by_item(rehearsal.jira)) == {"LEG-000#0"}
    status = await rehearsal.cli("status", run_id, "--format", "json")
    assert json.loads(status.out)["total_items"] == 4
