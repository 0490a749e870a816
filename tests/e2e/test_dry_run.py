"""`run --dry-run` reads each environment's system-token source once, mints nothing, and says
whether a token was there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.e2e.harness import Rehearsal, account, bulk_sandbox_config


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(5), port=0) as running:
        yield running


def _job(rehearsal: Rehearsal) -> Path:
    rows = [{"legacy_id": f"L{n}", "account_id": account(n), "issue": "MIG-1"} for n in range(3)]
    return rehearsal.write_job("trial", rows, COMMENT)


async def test_a_dry_run_says_the_token_is_there_and_mints_nothing(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """With the token file in place: exit 0, "system token of dev: there (file ...)", no mint
    and no Jira call reached the sandbox, no run journaled."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    ran = await rehearsal.cli("run", _job(rehearsal), "--dry-run")
    assert ran.code == 0, ran.text
    assert (f"system token of dev: there (file {tmp_path / 'system-token'}); nothing minted"
            in ran.out)
    assert not sandbox.world.mints_accepted and not sandbox.world.jira_calls
    assert "no runs" in (await rehearsal.cli("status")).out.lower()


async def test_a_dry_run_says_no_token_is_there_at_once(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """The token file missing (max_wait_s 600): the dry run says at once that there is none and
    why, and what a run would do; exit 0, nothing minted."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rehearsal.config_path.write_text(rehearsal.config_path.read_text().replace(
        "max_wait_s = 5.0", "max_wait_s = 600.0"))
    (tmp_path / "system-token").unlink()
    ran = await rehearsal.cli("run", _job(rehearsal), "--dry-run")
    assert ran.code == 0, ran.text
    assert (f"system token of dev: none (file {tmp_path / 'system-token'}: No such file or "
            "directory); a run would block this environment (exit 3) unless one arrives within "
            "max_wait_s") in ran.out
    assert not sandbox.world.mints_accepted
