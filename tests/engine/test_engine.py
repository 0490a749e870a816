"""The engine end to end against the sandbox: mint budget, one mint per user, blocked environments,
and no token in anything a run writes or prints."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from runner.config.configfile import load_config
from runner.engine.engine import Engine
from runner.errors import JournalError
from runner.job.jobfile import load_job
from runner.journal import ItemState, RunState, SqliteJournal
from runner.sandbox.config import JiraLimits, SandboxConfig
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    CLOUD_A,
    StartSandbox,
    pattern_account,
    site_ari,
    write_runner_config,
)

# Enough rows that checking them takes seconds: the signal surely comes mid-check.
ROWS_TO_CHECK = 200_000

ACTIONS = """
[[actions]]
type = "myself"

[[actions]]
type = "user.property.set"
key = "sync"
value = { n = "{n}" }

[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "synced-{n}"
value = { by = "{account_id}" }
"""


def write_job(folder: Path, accounts: list[str], actions: str = ACTIONS) -> Path:
    rows = ["account_id,n,issue"]
    rows += [f"{a},{i},MIG-{i % 5 + 1}" for i, a in enumerate(accounts)]
    (folder / "rows.csv").write_text("\n".join(rows) + "\n")
    job = folder / "job.toml"
    job.write_text(f'name = "t"\nsite = "acme"\n[source]\ncsv = "rows.csv"\n{actions}')
    return job


def roomy(config: SandboxConfig, **mint: Any) -> SandboxConfig:
    """Per-issue and burst limits out of the way, so a test is about what it names."""
    limits = JiraLimits(burst_get_post=10_000, burst_put_delete=10_000, per_issue_2s=10_000,
                        per_issue_30s=10_000)
    return dataclasses.replace(
        config, jira_limits=limits, mint_limit=dataclasses.replace(config.mint_limit, **mint)
    )


@pytest.mark.slow
async def test_300_users_inside_a_60_per_1s_mint_budget(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """300 users x 3 actions with a 60-per-1 s mint budget (five windows' worth of mints): every
    item done, exactly one mint per user, and no mint refused, as the sandbox's own counters
    say."""
    config = roomy(sandbox_config, limit=60, window_s=1.0, algorithm="sliding")
    async with start_sandbox(config) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb, mint_limit=60, mint_window_s=1.0,
                                              concurrency=32))
        accounts = [pattern_account(n) for n in range(300)]
        job = load_job(write_job(tmp_path, accounts), cfg)
        async with SqliteJournal(tmp_path / "journal.db") as journal:
            handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                            cfg.fingerprint, job.text)
            await journal.set_total(handle.run_id, 900)
            result = await Engine(cfg, job, journal).run(handle)
        world = sb.world
        assert result.exit_code == 0
        assert result.counts[ItemState.DONE] == 900
        assert sum(world.mints_rejected.values()) == 0
        assert world.mints_by_user == {(CLOUD_A, a): 1 for a in accounts}
        props = world.parts["jira"].site(CLOUD_A).user_properties
        assert all(props[a]["sync"] == {"n": str(i)} for i, a in enumerate(accounts))


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_wrong_context_ari_blocks_after_the_first_refusal(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Wrong context ARIs: one mint is refused, no second is sent, the run exits 3 and prints a
    diagnostic naming the ARI sent and the four checks."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb, context_ari=site_ari(CLOUD_A), concurrency=8)
        job = write_job(tmp_path, [pattern_account(n) for n in range(40)])
        code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--quiet",
                                       cwd=tmp_path)
        assert code == 3, err
        assert dict(sb.world.mints_refused) == {"context": 1}
        assert sum(sb.world.mints_accepted.values()) == 0
        text = " ".join((out + err).split())
        assert site_ari(CLOUD_A) in text
        for check in ("ARI", "allowImpersonation", "forge deploy", "forge install --upgrade"):
            assert check in text, check
        assert sb.world.jira_calls == {} or sum(sb.world.jira_calls.values()) == 0


async def test_refused_users_are_skipped_and_the_rest_done(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A deactivated user's items are skipped with the reason; everyone else's are done."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb))
        job = load_job(write_job(tmp_path, [*ACME_ACTIVE, ACME_DEACTIVATED]), cfg)
        async with SqliteJournal(tmp_path / "journal.db") as journal:
            handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                            cfg.fingerprint, job.text)
            await journal.set_total(handle.run_id, 12)
            result = await Engine(cfg, job, journal).run(handle)
            counts = await journal.counts(handle.run_id)
        assert result.counts[ItemState.DONE] == 9
        assert result.counts[ItemState.SKIPPED] == 3
        assert any("deactivated" in r.reason for r in counts.by_reason)
        assert result.exit_code == 0


async def test_no_token_in_logs_report_or_console(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """After a real run, no system or user token appears in stdout, stderr (JSON logs), the JSON
    report or the journal file."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [pattern_account(n) for n in range(20)])
        report = tmp_path / "report.json"
        code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--log-format",
                                       "json", "--report", str(report), cwd=tmp_path)
        assert code == 0, err
        secrets = [*sb.world.user_tokens, (tmp_path / "system-token").read_text().strip()]
        assert len(secrets) == 21
        written = [out, err, report.read_text()]
        written += [p.read_bytes().decode("latin-1") for p in tmp_path.glob("journal.db*")
                    if p.is_file()]
        assert json.loads(report.read_text())["exit_code"] == 0
        for secret in secrets:
            for text in written:
                assert secret not in text
        assert '"event": "runner.run.finished"' in err or "runner.run.finished" in err


def test_exit_codes_documented() -> None:
    """`forge-runner --help` lists the exit codes the engine returns."""
    from runner.cli import build_parser

    text = build_parser().format_help()
    for code in ("0 all done", "1 some items failed", "2 invalid input", "3 an environment "
                 "(or some items) blocked", "130 interrupted (SIGINT)", "143 stopped (SIGTERM)"):
        assert code in " ".join(text.split())


def test_run_result_exit_codes() -> None:
    """Interrupted (130 after SIGINT or a stop asked in code, 143 after SIGTERM) beats blocked
    beats failed; skipped users alone exit 0."""
    from runner.engine.engine import RunResult

    def code(counts: dict[ItemState, int], **kw: object) -> int:
        return RunResult("r", RunState.FINISHED, counts, **kw).exit_code  # type: ignore[arg-type]

    assert code({ItemState.DONE: 3}) == 0
    assert code({ItemState.SKIPPED: 3}) == 0
    assert code({ItemState.FAILED: 1}) == 1
    assert code({ItemState.UNCERTAIN: 1}) == 1
    assert code({ItemState.FAILED: 1, ItemState.BLOCKED: 1}) == 3
    assert code({ItemState.BLOCKED: 1}, interrupted=True) == 130
    assert code({ItemState.DONE: 1}, interrupted=True, stop_signal=signal.SIGINT) == 130
    assert code({ItemState.BLOCKED: 1}, interrupted=True, stop_signal=signal.SIGTERM) == 143


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has its own SIGTERM handler installed (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (15 - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_sigterm_while_checking_rows_exits_143_with_nothing_sent(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A SIGTERM while a big job's rows are being checked ends the command at once with 143,
    nothing sent to the gateway or Jira."""
    import subprocess

    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [pattern_account(n) for n in range(ROWS_TO_CHECK)])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "run", str(job), "--config", str(cfg), "--quiet",
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                # Polling /proc: the child's handlers offer no event to wait on.
                while not _catches_sigterm(process.pid):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                code = await process.wait()
            assert process.stderr is not None
            err = (await process.stderr.read()).decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == 143
        assert "nothing was sent" in err
        assert sum(sb.world.mints_accepted.values()) == 0
        assert sum(sb.world.jira_calls.values()) == 0


async def test_an_error_inside_the_engine_comes_out_as_itself(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A journal error in one of the engine's tasks reaches the caller as that error, not
    wrapped in a task group's ExceptionGroup, so the command can print it as one line; and the
    run is still finished in the journal, as interrupted for the next run to resume, never
    left running."""

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
