"""What a blocked run's summary and report say: refused mints are counted (`mints 0 (1
refused)`), and a wait for a system token is shown under its environment's name
(`system_token:dev`), not hidden as if the name were a secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A, site_ari
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.e2e.harness import Rehearsal, account, bulk_sandbox_config


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(5), port=0) as running:
        yield running


def _job(rehearsal: Rehearsal, rows: int) -> Path:
    return rehearsal.write_job("blocked", [
        {"legacy_id": f"L{n}", "account_id": account(n), "issue": "MIG-1"} for n in range(rows)
    ], COMMENT)


async def test_a_blocked_runs_summary_counts_the_refused_mint(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """A wrong context ARI, one user: exit 3, and the summary's mints line is "0 (1 refused)",
    as the gateway refused one mint; the JSON summary says mints 0 and mints_refused 1."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    text = rehearsal.config_path.read_text()
    rehearsal.config_path.write_text(text.replace(
        'environment = "dev"\n', f'environment = "dev"\ncontext_ari = "{site_ari(CLOUD_A)}"\n'))
    ran = await rehearsal.cli("run", _job(rehearsal, 1))
    assert ran.code == 3, ran.text
    assert sum(sandbox.world.mints_refused.values()) == 1
    assert "  mints     0 (1 refused)\n" in ran.out
    as_json = await rehearsal.cli("run", _job(rehearsal, 1), "--fresh", log_format="json")
    (summary,) = [json.loads(line) for line in as_json.err.splitlines()
                  if '"runner.run.summary"' in line]
    assert (summary["mints"], summary["mints_refused"]) == (0, 1)
    assert summary["reasons"] == [{"state": "blocked", "reason": "environment-blocked",
                                   "text": "the environment can't mint", "message": None,
                                   "count": 1}]


async def test_a_system_token_wait_is_shown_under_its_environments_name(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """An empty token file (max_wait_s 1): the run waits, then blocks (exit 3); the report's
    pause and the summary's reason name `system_token:dev` and the environment, and the
    report gives the seconds waited in their own field, not in the reason."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rehearsal.config_path.write_text(rehearsal.config_path.read_text().replace(
        "max_wait_s = 5.0", "max_wait_s = 1.0"))
    (tmp_path / "system-token").write_text("")
    report = tmp_path / "report.json"
    ran = await rehearsal.cli("run", _job(rehearsal, 1), "--report", str(report))
    assert ran.code == 3, ran.text
    assert "[REDACTED]" not in ran.text
    data = json.loads(report.read_text())
    assert [p["scope"] for p in data["pauses"]["active_at_end"]] == ["system_token:dev"]
    items = data["items"]
    assert {(i["state"], i["reason"]) for i in items} == {("blocked", "system-token")}
    assert {i["waited_s"] for i in items} == {1}
    assert all(i["message"] == f"file {tmp_path / 'system-token'} is empty" for i in items)
    assert f"1  blocked   system-token: file {tmp_path / 'system-token'} is empty" in ran.out
