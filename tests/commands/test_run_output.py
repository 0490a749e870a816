"""What `forge-runner run` prints, through the real command: on a terminal (a pty) and piped,
as JSON, quiet, coloured or not; and a run that did nothing exits 5 and says so."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from runner.sandbox.config import JiraLimits, SandboxConfig
from runner.sandbox.testing import (
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    StartSandbox,
    pattern_account,
    site_ari,
    write_runner_config,
)
from tests.commands.terminal import child_env, run_on_pty, run_piped

ACTIONS = """
[[actions]]
type = "myself"

[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "synced-{n}"
value = { by = "{account_id}" }
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def roomy(config: SandboxConfig) -> SandboxConfig:
    """Jira's burst and per-issue limits out of the way: the tests are about output."""
    return dataclasses.replace(config, jira_limits=JiraLimits(
        burst_get_post=10_000, burst_put_delete=10_000, per_issue_2s=10_000,
        per_issue_30s=10_000))


def write_job(folder: Path, accounts: list[str], *, extra: str = "",
              issue: str = "MIG-{n}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["account_id,n,issue"]
    rows += [f"{a},{i},{issue.format(n=i % 5 + 1)}" for i, a in enumerate(accounts)]
    (folder / "rows.csv").write_text("\n".join(rows) + "\n")
    job = folder / "job.toml"
    job.write_text(f'name = "t"\nsite = "acme"\n{extra}[source]\ncsv = "rows.csv"\n{ACTIONS}')
    return job


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` parsed as JSON (a line that is not JSON fails the test)."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\nin:\n{text}") from None
    return lines


async def test_wrong_ari_diagnostic_prints_every_ari_verbatim_on_a_terminal_and_piped(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """The exit-3 diagnostic names every ARI sent as it is, on a pty and in a pipe: no markup
    eats ``[ari:...]`` and no ``:cloud:`` becomes an emoji."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb, context_ari=site_ari(CLOUD_A),
                                  concurrency=4)
        job = write_job(tmp_path, [pattern_account(n) for n in range(6)])
        args = ("run", str(job), "--config", str(cfg), "--fresh")
        on_pty = await run_on_pty(*args, cwd=tmp_path)
        piped = await run_piped(*args, cwd=tmp_path)
    for ran in (on_pty, piped):
        assert ran.code == 3, ran.err
        out = ANSI.sub("", ran.out)
        assert f"context ARIs sent: [{site_ari(CLOUD_A)}]" in out
        assert f"contextIds of [{site_ari(CLOUD_A)}]" in out
        assert "\u2601" not in ran.out and "\u2601" not in ran.err

def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


async def test_piped_output_is_not_wrapped(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Piped, a failed run's closing line keeps its suggested commands on one line, longer
    than 80 columns."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [pattern_account(n) for n in range(3)], issue="NOPE-{n}")
        ran = await run_piped("run", str(job), "--config", str(cfg), cwd=tmp_path)
    assert ran.code == 1, ran.err
    closing = last_line(ran.out)
    assert len(closing) > 80
    assert re.search(r"see `forge-runner report r-\S+`, then `forge-runner retry r-\S+`",
                     closing), closing


async def test_json_with_stderr_merged_is_json_on_every_line_of_a_passing_and_a_failing_run(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """``--log-format json 2>&1``: every line parses as JSON, the run ends in one
    ``runner.run.summary`` event with the counts, the duration and the exit code."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        good = write_job(tmp_path / "good", [pattern_account(n) for n in range(3)])
        bad = write_job(tmp_path / "bad", [pattern_account(n) for n in range(3)],
                        issue="NOPE-{n}")
        runs = [await run_piped("run", str(job), "--config", str(cfg), "--log-format", "json",
                                cwd=tmp_path, merged=True) for job in (good, bad)]
    for ran, code in zip(runs, (0, 1), strict=True):
        assert ran.code == code, ran.out
        lines = json_lines(ran.out)
        summaries = [line for line in lines if line["event"] == "runner.run.summary"]
        assert len(summaries) == 1 and summaries[0] is lines[-1]
        summary = summaries[0]
        assert summary["exit_code"] == code and summary["total"] == 6
        assert isinstance(summary["duration_s"], float)
        assert summary["done"] == (6 if code == 0 else 3)
        assert summary["failed"] == 6 - summary["done"]
        assert summary["level"] == ("info" if code == 0 else "warning")
        assert any(line["event"] == "runner.run.starting" for line in lines)


async def test_quiet_on_a_terminal_prints_the_summary_and_warnings_only(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """``--quiet`` on a pty: no starting line, no live view, no info log line; the summary and
    the closing line still."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [pattern_account(n) for n in range(3)])
        ran = await run_on_pty("run", str(job), "--config", str(cfg), "--quiet", cwd=tmp_path)
    assert ran.code == 0, ran.err
    out = ANSI.sub("", ran.out)
    assert "starting run" not in out and "elapsed" not in out
    assert out.startswith("forge-runner summary")
    assert re.search(r"run r-\S+: all done \(6 items\)", last_line(out))
    assert "info" not in ran.err and "runner.mint.ok" not in ran.err


async def test_console_warnings_show_times_as_iso_8601_and_no_none(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A refused mint's warning line in console format shows ``until`` as an ISO 8601 time,
    not a POSIX number, and no ``=None`` field; JSON keeps the number."""
    tight = dataclasses.replace(roomy(sandbox_config), mint_limit=dataclasses.replace(
        sandbox_config.mint_limit, limit=2, window_s=1.0))
    async with start_sandbox(tight) as sb:
        cfg = write_runner_config(tmp_path, sb, mint_limit=1000)
        job = write_job(tmp_path, [pattern_account(n) for n in range(4)])
        text = await run_piped("run", str(job), "--config", str(cfg), "--log-format",
                               "console", cwd=tmp_path)
        as_json = await run_piped("run", str(job), "--config", str(cfg), "--fresh",
                                  "--log-format", "json", cwd=tmp_path)
    assert text.code == 0 and as_json.code == 0, text.err + as_json.err
    limited = [line for line in text.err.splitlines() if "runner.mint.rate_limited" in line]
    assert limited and all(re.search(r"until=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line)
                           for line in limited), text.err
    assert "=None" not in text.err
    events = [line for line in json_lines(as_json.err)
              if line["event"] == "runner.mint.rate_limited"]
    assert events and all(isinstance(e["until"], float) for e in events)
    assert all(e["level"] == "warning" for e in events)


async def test_refusals_and_not_done_items_log_at_warning(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Refused users' mints log at warning and the run that did nothing ends in a warning
    summary, so alerting on the level catches it."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [ACME_DEACTIVATED, ACME_NO_ACCESS])
        ran = await run_piped("run", str(job), "--config", str(cfg), "--log-format", "json",
                              cwd=tmp_path)
    lines = json_lines(ran.err)
    refused = [line for line in lines if line["event"] == "runner.mint.user_refused"]
    assert len(refused) == 2 and all(line["level"] == "warning" for line in refused)
    assert lines[-1]["event"] == "runner.run.summary" and lines[-1]["level"] == "warning"


SGR_COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m")


async def test_colour_means_state_and_follows_no_color_and_the_option(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """On a pty, failed counts and the failed closing line are red; ``NO_COLOR`` and
    ``--color never`` print no colour; ``--color always`` colours a pipe."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [pattern_account(n) for n in range(3)], issue="NOPE-{n}")
        args = ("run", str(job), "--config", str(cfg), "--quiet", "--fresh")
        coloured = await run_on_pty(*args, cwd=tmp_path)
        no_color = await run_on_pty(*args, cwd=tmp_path,
                                    env=child_env(TERM="xterm-256color", NO_COLOR="1"))
        never = await run_on_pty(*args, "--color", "never", cwd=tmp_path)
        always = await run_piped(*args, "--color", "always", cwd=tmp_path)
    assert {r.code for r in (coloured, no_color, never, always)} == {1}
    for ran in (coloured, always):
        assert re.search(r"\x1b\[31m3 failed\x1b\[0m", ran.out), ran.out
        assert re.search(r"\x1b\[1;31mrun r-\S+: 3 done, 3 failed", ran.out), ran.out
    for ran in (no_color, never):
        assert not SGR_COLOUR.search(ran.out), ran.out
        assert "3 failed" in ran.out


async def test_every_user_refused_exits_5_and_says_nothing_was_done(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Every user refused: exit 5, the last line says ``0 done, 4 skipped`` and why; the same
    job with ``allow_empty = true`` exits 0 and still says so."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        refused = [ACME_DEACTIVATED, ACME_NO_ACCESS]
        job = write_job(tmp_path / "strict", refused)
        ran = await run_piped("run", str(job), "--config", str(cfg), cwd=tmp_path)
        allowed = write_job(tmp_path / "allowed", refused, extra="allow_empty = true\n")
        ran_allowed = await run_piped("run", str(allowed), "--config", str(cfg), cwd=tmp_path)
    assert ran.code == 5, ran.out + ran.err
    assert re.search(r"run r-\S+: 0 done, 4 skipped: .+; nothing was done \(exit 5\)",
                     last_line(ran.out)), ran.out
    assert "all done" not in ran.out
    assert ran_allowed.code == 0, ran_allowed.out + ran_allowed.err
    assert re.search(r"0 done, 4 skipped: .+ \(allowed\)$", last_line(ran_allowed.out))


async def test_a_header_only_source_exits_5_unless_allowed(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """A CSV with a header and no rows: exit 5 naming the empty source; ``--allow-empty``
    exits 0."""
    async with start_sandbox(roomy(sandbox_config)) as sb:
        cfg = write_runner_config(tmp_path, sb)
        job = write_job(tmp_path, [])
        ran = await run_piped("run", str(job), "--config", str(cfg), cwd=tmp_path)
        ok = await run_piped("run", str(job), "--config", str(cfg), "--allow-empty", "--fresh",
                             cwd=tmp_path)
    assert ran.code == 5, ran.out + ran.err
    assert "0 items: the source has no rows, nothing to do (exit 5)" in last_line(ran.out)
    assert ok.code == 0, ok.out + ok.err
    assert last_line(ok.out).endswith("nothing to do (allowed)")
