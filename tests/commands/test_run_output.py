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
from tests.commands.terminal import run_on_pty, run_piped

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

