"""A run whose mints fail, through the real command: one user's failure is that user's, an
unusable gateway blocks the environment (exit 3), and every run ends finished in the journal
with its summary and no traceback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.engine.engine import Engine
from runner.errors import JournalError
from runner.job.jobfile import load_job
from runner.journal import ItemState, SqliteJournal
from runner.journal.base import RunState
from runner.sandbox.config import SandboxConfig
from runner.sandbox.testing import StartSandbox, pattern_account, write_runner_config
from tests.engine.test_engine import roomy, run_cli, write_job
from tests.minting.gatewayproxy import closed_port_url, html_proxy

FAST_MINT_RETRY = """
[retry.mint]
attempts = 3
wait_initial_s = 0.05
wait_max_s = 0.1
wait_jitter_s = 0.0
"""


def at_gateway(config: Path, url: str) -> Path:
    """``config`` with its gateway_url replaced by ``url``."""
    lines = [f'gateway_url = "{url}"' if line.startswith("gateway_url") else line
             for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")
    return config


async def last_run(journal_path: Path) -> tuple[RunState, dict[ItemState, int], list[str]]:
    async with SqliteJournal(journal_path) as journal:
        (run,) = await journal.runs()
        counts = await journal.counts(run.run_id)
        reasons = [r.reason for r in counts.by_reason]
        async for record in journal.records(run.run_id):
            reasons.append(f"{record.reason} {record.detail}")
        return run.state, dict(counts.by_state), reasons


async def test_an_unreachable_gateway_blocks_the_run_with_exit_3(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Nothing listening at gateway_url: exit 3, a one-line diagnostic naming the URL and
    what to check, the summary, every item blocked, the run finished in the journal as
    failed, and no traceback."""
    url = closed_port_url()
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = at_gateway(write_runner_config(tmp_path, sb, concurrency=4, extra=FAST_MINT_RETRY),
                         url)
        job = write_job(tmp_path, [pattern_account(n) for n in range(8)])
        code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--quiet",
                                       cwd=tmp_path)
    assert code == 3, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    (line,) = [ln for ln in out.splitlines() if "unreachable" in ln]
    assert url in line and "gateway_url" in line
    assert "an environment is blocked (exit 3)" in out
    assert "blocked" in out and "24" in out  # the summary counts the 24 blocked items
    state, counts, _ = await last_run(tmp_path / "journal.db")
    assert state is RunState.FAILED
    assert counts.get(ItemState.BLOCKED) == 24 and not counts.get(ItemState.STARTED)


async def test_one_user_answered_with_html_fails_alone(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """One user of eight has their mint answered with an HTML page: that user's items fail
    with the reason, the seven others' are done, exit 1 with the summary, the run finished."""
    users = [pattern_account(n) for n in range(8)]
    bad = users[3]
    async with start_sandbox(roomy(sandbox_config)) as sb, \
            html_proxy(sb.gateway_url, lambda user, _: user == bad) as proxy:
        cfg = at_gateway(write_runner_config(tmp_path, sb, concurrency=4, extra=FAST_MINT_RETRY),
                         proxy.url)
        job = write_job(tmp_path, users)
        code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--quiet",
                                       cwd=tmp_path)
    assert code == 1, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert "some items failed (exit 1)" in out
    assert proxy.mints[bad] == 1
    state, counts, reasons = await last_run(tmp_path / "journal.db")
    assert state is RunState.FINISHED
    assert counts.get(ItemState.DONE) == 21 and counts.get(ItemState.FAILED) == 3
    assert any("mint-failed" in r and "not a JSON object" in r for r in reasons)


async def test_a_crash_inside_the_engine_leaves_the_run_interrupted(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """An error that ends the engine (the journal failing under it) still finishes the run
    in the journal, as interrupted for the next run to resume, never left running."""

    class FailingJournal(SqliteJournal):
        async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
            raise JournalError("disk full")

    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb))
        job = load_job(write_job(tmp_path, [pattern_account(n) for n in range(3)]), cfg)
        async with FailingJournal(tmp_path / "journal.db") as journal:
            handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                            cfg.fingerprint, job.text)
            with pytest.raises(JournalError, match="disk full"):
                await Engine(cfg, job, journal).run(handle)
            run = await journal.get_run(handle.run_id)
    assert run.state is RunState.INTERRUPTED
