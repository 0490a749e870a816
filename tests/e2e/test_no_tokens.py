"""No token, user or system, in anything a real run leaves behind: the journal (the SQLite file
and its WAL, or a ``pg_dump`` of the PostgreSQL database), what the process printed, the
report, and what `status` and `report` print afterwards."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import Faults
from runner.sandbox.testing import ACME_DEACTIVATED, MIGRATION_ACTIONS
from tests.e2e.harness import (
    ArrivalWatch,
    Rehearsal,
    account,
    bulk_sandbox_config,
    run_id_of,
)
from tests.pgdb import pg_dump

pytestmark = pytest.mark.slow


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    # Faults so that errors, retries, lost answers and look-ups all reach the logs and journal.
    faults = Faults(http_500=0.05, drop_connection=0.03, after_effect=0.5)
    async with serve(bulk_sandbox_config(5, faults=faults), port=0) as running:
        yield running


def _rows() -> list[dict[str, str]]:
    rows = [{"legacy_id": f"LEG-{n:03d}", "account_id": account(n % 40),
             "issue": f"MIG-{n % 5 + 1}"} for n in range(200)]
    # A user who can't be impersonated (skipped) and an issue that doesn't exist (failed).
    rows += [{"legacy_id": "LEG-GONE", "account_id": ACME_DEACTIVATED, "issue": "MIG-1"},
             {"legacy_id": "LEG-404", "account_id": account(1), "issue": "MIG-99"}]
    return rows


def _forms(secret: str) -> list[bytes]:
    """The ways a token could show: whole, base64, its first 16 characters."""
    return [secret.encode(), base64.b64encode(secret.encode()), secret[:16].encode()]


def _leaks(files: Mapping[str, bytes], secrets: list[str]) -> list[str]:
    return [f"token #{i} in {name}" for name, data in files.items()
            for i, secret in enumerate(secrets) for form in _forms(secret) if form in data]


async def test_no_token_in_journal_wal_output_or_reports(
    tmp_path: Path, sandbox: RunningSandbox, journal_url: str | None
) -> None:
    """After a run killed mid-way with its whole process group (its WAL left behind, as when
    the machine is lost) and resumed to the end with a report, none of the tokens the sandbox
    issued, nor the system token, is in any file written, nor in the journal's database."""
    rehearsal = Rehearsal.start(tmp_path, sandbox, journal_url=journal_url)
    job = rehearsal.write_job("secrets", _rows(), MIGRATION_ACTIONS)
    watch = ArrivalWatch.install(sandbox)
    first = await rehearsal.spawn("run", job, log_format="json")
    watch.at(150, lambda: first.signal_group(signal.SIGKILL))
    killed = await first.wait()
    assert killed.code == -signal.SIGKILL
    run_id = run_id_of(killed)
    after_kill = rehearsal.files()
    if journal_url is None:
        assert any(name.endswith("forge-runner.db-wal") and data
                   for name, data in after_kill.items())
    else:
        after_kill["pg_dump"] = await asyncio.to_thread(pg_dump, journal_url)

    report = tmp_path / "report.json"
    final = await rehearsal.cli("run", job, "--report", report, log_format="json")
    assert final.code == 1, final.text  # the deactivated user and the missing issue
    assert report.exists()
    for args in (("status",), ("status", run_id), ("report", run_id, "--format", "json"),
                 ("report", run_id, "--format", "csv")):
        assert (await rehearsal.cli(*args)).code == 0
    after_all = rehearsal.files()
    if journal_url is not None:
        after_all["pg_dump"] = await asyncio.to_thread(pg_dump, journal_url)
        assert b"LEG-404" in after_all["pg_dump"]  # the dump holds the journal's rows

    user_tokens = list(sandbox.world.user_tokens)
    # Two processes minted for their users: each at least once per user it got to.
    assert len(user_tokens) >= 41
    secrets = [*user_tokens, rehearsal.system_token, rehearsal.system_token.rsplit(".", 1)[1]]
    written = {**{f"{k} (after the kill)": v for k, v in after_kill.items()}, **after_all}
    written = {name: data for name, data in written.items() if not name.startswith("system-token")}
    assert any(b"LEG-404" in data for data in written.values())  # the grep can find things
    assert any(b"request_id" in data or b"http 500" in data for data in written.values())
    assert _leaks(written, secrets) == []
