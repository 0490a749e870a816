"""The summary holds a run to the bound of what it ran: a run that takes a finished job up again
for the rows added since is compared with their share of the plan's shortest duration, not with
the whole job's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.e2e.harness import HIGH, Rehearsal, account, bulk_sandbox_config, write_csv


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(5), port=0) as running:
        yield running


def _summary(text: str) -> dict[str, object]:
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    (summary,) = [e for e in events if e["event"] == "runner.run.summary"]
    return summary


async def test_a_run_of_the_rows_added_since_is_held_to_their_share_of_the_bound(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """Minting binds (10 per second): 4 rows of 8 run after the first 4 finished have the
    lower bound of 4 of the 8 rows' plan, half the whole job's, in the JSON summary."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    config = rehearsal.config_path.read_text()
    rehearsal.config_path.write_text(config.replace(f"mint_limit = {HIGH}", "mint_limit = 600"))
    rows = [{"legacy_id": f"L{n}", "account_id": account(n), "issue": f"MIG-{n % 5 + 1}"}
            for n in range(8)]
    job = rehearsal.write_job("grows", rows[:4], COMMENT)
    first = await rehearsal.cli("run", job)
    assert first.code == 0, first.text

    write_csv(tmp_path / "grows.csv", rows)
    planned = json.loads((await rehearsal.cli("plan", job, "--json")).out)
    assert planned["items"] == 8 and planned["mints"] == 8 and planned["shortest_s"] > 0.3
    second = await rehearsal.cli("run", job, log_format="json")
    assert second.code == 0, second.text
    summary = _summary(second.err + second.out)
    assert (summary["total"], summary["finished"], summary["done"]) == (4, 4, 4)
    assert summary["lower_bound_s"] == pytest.approx(planned["shortest_s"] / 2, abs=0.01)
