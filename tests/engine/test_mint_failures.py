"""A run whose mints fail, through the real command: one user's failure is that user's, an
unusable gateway blocks the environment (exit 3), and every run ends finished in the journal
with its summary and no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runner.journal import ItemState, SqliteJournal
from runner.journal.base import RunState
from runner.sandbox.config import SandboxConfig
from runner.sandbox.testing import StartSandbox, pattern_account, write_runner_config
from tests.engine.test_engine import roomy, run_cli, write_job
from tests.minting.gatewayproxy import (
    answering_proxy,
    closed_port_url,
    hang,
    html_page,
    html_proxy,
)

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


def _minted(ttl: str) -> web.Response:
    """A mint's success, its ttl written as given (NaN is what Python's json accepts)."""
    return web.Response(status=200, content_type="application/json", text=(
        '{"data": {"offlineUserAuthToken": {"success": true, "errors": null, '
        '"authToken": {"token": "t", "ttl": ' + ttl + "}}}}"))


UNRECOGNISED = web.json_response({"data": {"offlineUserAuthToken": {
    "success": False, "errors": [{"message": "Something nobody has seen before"}],
    "authToken": None}}})


@pytest.mark.parametrize(
    ("answer", "state", "reason", "code"),
    [
        (lambda: web.json_response({"errors": [{"message": "I'm a teapot"}]}, status=418),
         ItemState.FAILED, "HTTP 418", 1),
        (lambda: _minted("0"), ItemState.FAILED, "bad ttl", 1),
        (lambda: _minted("-5"), ItemState.FAILED, "bad ttl", 1),
        (lambda: _minted("NaN"), ItemState.FAILED, "bad ttl", 1),
        (lambda: _minted('"soon"'), ItemState.FAILED, "bad ttl", 1),
        (lambda: web.json_response({"errors": []}, status=503), ItemState.FAILED, "503", 1),
        (hang, ItemState.FAILED, "timed out", 1),
        (lambda: web.json_response({"errors": [{"message": "rate limited"}]}, status=429,
                                   headers={"Retry-After": "3600"}),
         ItemState.FAILED, "still rate limited at the mint deadline", 1),
        (lambda: UNRECOGNISED, ItemState.BLOCKED, "nobody has seen", 3),
    ],
    ids=["status-418", "ttl-0", "ttl-negative", "ttl-nan", "ttl-string", "5xx-past-attempts",
         "hung-past-attempts", "429-past-the-deadline", "unrecognised-refusal"],
)
async def test_one_users_final_mint_failure_is_that_users_alone(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox,
    answer: Any, state: ItemState, reason: str, code: int,
) -> None:
    """One user of eight whose mint ends in a failure for good (a status the gateway does not
    give, a ttl that is not a finite positive number, 5xx or no answer within
    ``request_timeout_s`` past ``[retry.mint]``'s attempts, a 429 asking for longer than its
    deadline, a refusal no ``[gateway_messages]``
    pattern matches): that user's items are failed (or, for the
    refusal, blocked) with the reason, the seven others' done, the run finished in the journal
    with its summary, and the command exits with the code that says so; no traceback."""
    users = [pattern_account(n) for n in range(8)]
    bad = users[3]
    async with start_sandbox(roomy(sandbox_config)) as sb, \
            answering_proxy(sb.gateway_url, lambda user, _: answer() if user == bad else None
                            ) as proxy:
        cfg = at_gateway(write_runner_config(tmp_path, sb, concurrency=4, extra=FAST_MINT_RETRY),
                         proxy.url)
        # A hung mint ends after this, three times over; loopback Jira answers far sooner.
        cfg.write_text(cfg.read_text().replace("[runner]\n", "[runner]\nrequest_timeout_s = 1.0\n"))
        job = write_job(tmp_path, users)
        exit_code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--quiet",
                                            cwd=tmp_path)
    assert exit_code == code, out + err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    # The summary counts what the journal holds.
    assert f"24 of 24 finished: 21 done, 3 {state}" in out, out
    closing = out.rstrip().splitlines()[-1]
    said = "some items failed (exit 1)" if code == 1 else "3 blocked: items blocked (exit 3)"
    assert said in closing, closing
    run_state, counts, reasons = await last_run(tmp_path / "journal.db")
    assert run_state is RunState.FINISHED
    assert counts.get(ItemState.DONE) == 21 and counts.get(state) == 3, counts
    assert any(reason in r for r in reasons), reasons


async def test_users_failing_alike_block_the_environment_with_exit_3(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """The gateway answers every mint with an HTML page: after ``block_after_failed_mints``
    (3) users in a row fail alike, the environment is blocked: exit 3, one line naming the
    gateway and what to check, no more mints sent, the run finished, no traceback."""
    users = [pattern_account(n) for n in range(12)]
    async with start_sandbox(roomy(sandbox_config)) as sb, \
            answering_proxy(sb.gateway_url, lambda _user, _n: html_page()) as proxy:
        cfg = at_gateway(write_runner_config(tmp_path, sb, concurrency=1, extra=FAST_MINT_RETRY),
                         proxy.url)
        job = write_job(tmp_path, users)
        code, out, err = await run_cli("run", str(job), "--config", str(cfg), "--quiet",
                                       cwd=tmp_path)
    assert code == 3, out + err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert "an environment is blocked (exit 3)" in out
    (line,) = [ln for ln in out.splitlines() if "in a row" in ln]
    assert line.startswith(f"the gateway at {proxy.url} failed the mints of 3 users in a row "
                           "the same way (not a JSON object: ")
    assert line.endswith("check environments.dev.gateway_url, the network and any proxy in "
                         "between")
    assert sum(proxy.mints.values()) == 3
    state, counts, _ = await last_run(tmp_path / "journal.db")
    assert state is RunState.FAILED
    assert counts.get(ItemState.FAILED, 0) + counts.get(ItemState.BLOCKED, 0) == 36, counts
