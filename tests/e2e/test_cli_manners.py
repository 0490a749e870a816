"""The command line's manners, through the real command: version, help, a mistyped command,
argument checks, and the hints of a refused config."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from runner.sandbox.app import RunningSandbox
from tests.e2e.harness import ArrivalWatch, Rehearsal, account, run_id_of


def forge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``forge-runner ARGS`` run to its end in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """`--version` prints `forge-runner X.Y.Z` and exits 0."""
    done = forge("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("forge-runner 0.")


def test_no_command_prints_the_help(tmp_path: Path) -> None:
    """`forge-runner` alone prints the help (every command listed) and exits 0."""
    done = forge(cwd=tmp_path)
    assert done.returncode == 0
    assert "usage: forge-runner" in done.stdout
    for command in ("run", "resume", "retry", "status", "report", "doctor"):
        assert f"    {command} " in done.stdout


def test_an_unknown_command_suggests_the_nearest(tmp_path: Path) -> None:
    """A mistyped command exits 2 with one line naming the nearest command."""
    done = forge("rn", "job.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("forge-runner: unknown command 'rn'; did you mean run?")
    assert done.stderr.count("\n") == 1


def test_resume_and_retry_describe_themselves_and_run(tmp_path: Path) -> None:
    """`resume --help` and `retry --help` describe the command and RUN; retry's mode is said."""
    resume = forge("resume", "--help", cwd=tmp_path).stdout
    retry = forge("retry", "--help", cwd=tmp_path).stdout
    assert "uncertain ones (sent, answer lost) are looked up in Jira" in " ".join(resume.split())
    assert "RUN a run ID (r-YYYYMMDD-xxxxxx;" in " ".join(resume.split())
    assert "Put a run's failed, skipped and blocked items back in line" in " ".join(retry.split())
    assert "RUN a run ID" in " ".join(retry.split())


def test_concurrency_below_one_is_refused(tmp_path: Path) -> None:
    """`--concurrency 0` and `-3` exit 2 naming the argument, before any file is read."""
    for value in ("0", "-3", "many"):
        done = forge("run", "job.toml", "--concurrency", value, cwd=tmp_path)
        assert done.returncode == 2
        assert "argument --concurrency:" in done.stderr


def test_status_limit_below_one_is_refused(tmp_path: Path) -> None:
    """`status --limit 0` exits 2 naming the argument."""
    done = forge("status", "--limit", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "argument --limit: 0 is less than 1" in done.stderr


def test_a_missing_default_config_suggests_config_or_the_example(tmp_path: Path) -> None:
    """Without forge-runner.toml, `run` exits 2 suggesting --config or copying the example."""
    done = forge("run", "job.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "name the config with --config FILE, or copy config.example.toml to " \
        "forge-runner.toml" in done.stderr


async def test_a_cloud_id_that_is_no_uuid_is_refused(tmp_path: Path,
                                                     sandbox: RunningSandbox) -> None:
    """`cloud_id = "acme-prod"` exits 2 naming the key and what a cloud ID is."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    text = rehearsal.config_path.read_text()
    start = text.index('cloud_id = "') + len('cloud_id = "')
    end = text.index('"', start)
    rehearsal.config_path.write_text(text[:start] + "acme-prod" + text[end:])
    job = rehearsal.write_job("j", [{"legacy_id": "L1", "account_id": "a", "issue": "MIG-1"}],
                              '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\n'
                              'body = "x"\n')
    done = await rehearsal.cli("run", job)
    assert done.code == 2
    assert "sites.acme.cloud_id: expected the site's cloud ID, a UUID" in done.err
    assert "found 'acme-prod'" in done.err or 'found "acme-prod"' in done.err


COMMENT = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "Migrated {legacy_id}"\n'


async def test_a_failed_run_names_its_journal_and_next_steps(tmp_path: Path,
                                                             sandbox: RunningSandbox) -> None:
    """A run's first lines name its journal file; one with failed items ends saying how many
    and `retry RUN` (no `resume`: nothing is uncertain)."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rows = [{"legacy_id": f"L{i}", "account_id": account(1), "issue": issue}
            for i, issue in enumerate(["MIG-1", "NOPE-9", "NOPE-9"])]
    done = await rehearsal.cli("run", rehearsal.write_job("fails", rows, COMMENT))
    assert done.code == 1, done.text
    run_id = run_id_of(done)
    lines = done.out.splitlines()
    assert lines[1] == f"journal: {rehearsal.journal_path.resolve()}"
    assert lines[-1] == (f"run {run_id}: 1 done, 2 failed: some items failed (exit 1); see "
                         f"`forge-runner report {run_id}`, then `forge-runner retry {run_id}` "
                         "puts the 2 failed, skipped and blocked back in line")


async def test_a_missing_token_file_blocks_at_once(tmp_path: Path,
                                                   sandbox: RunningSandbox) -> None:
    """A system-token file that does not exist ends the run blocked (exit 3) naming the file,
    without waiting max_wait_s: no "waiting" line for the token is printed."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rehearsal.config_path.write_text(rehearsal.config_path.read_text().replace(
        "max_wait_s = 5.0", "max_wait_s = 600.0"))
    (tmp_path / "system-token").unlink()
    rows = [{"legacy_id": "L1", "account_id": account(1), "issue": "MIG-1"}]
    done = await rehearsal.cli("run", rehearsal.write_job("broken", rows, COMMENT))
    assert done.code == 3, done.text
    said = f"blocked   system-token: file {tmp_path / 'system-token'}: No such file or directory"
    assert "".join(said.split()) in "".join(done.out.split())  # the summary wraps long lines
    assert "Traceback" not in done.text


async def test_no_token_within_max_wait_blocks_all_waiting_work_at_once(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """A token file that stays empty past max_wait_s (1 s) blocks the environment: every one
    of 40 users' items is blocked at once, none taking a slot of a mint budget of 1 an hour
    (each taking one in turn would take 40 hours), no mint sent; exit 3 with the summary, a line
    naming the token source's key and the closing line; the run finished."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rehearsal.config_path.write_text(rehearsal.config_path.read_text()
                                     .replace("max_wait_s = 5.0", "max_wait_s = 1.0")
                                     .replace("mint_limit = 1000000", "mint_limit = 1")
                                     .replace("mint_window_s = 60.0", "mint_window_s = 3600.0"))
    (tmp_path / "system-token").write_text("")
    rows = [{"legacy_id": f"L{n}", "account_id": account(n), "issue": "MIG-1"}
            for n in range(40)]
    done = await rehearsal.cli("run", rehearsal.write_job("waits", rows, COMMENT))
    assert done.code == 3, done.text
    assert "Traceback" not in done.text
    run_id = run_id_of(done)
    assert done.out.rstrip().splitlines()[-1] == (
        f"run {run_id}: an environment is blocked (exit 3)")
    assert "environments.dev.system_token" in done.out
    assert "40 of 40 finished: 0 done, 40 blocked" in done.out
    assert sum(sandbox.world.mints_accepted.values()) == 0
    status = json.loads((await rehearsal.cli("status", run_id, "--format", "json")).out)
    assert (status["state"], status["counts"]["blocked"]) == ("failed", 40)


async def test_status_text_and_json_agree_on_a_killed_run(tmp_path: Path,
                                                          sandbox: RunningSandbox) -> None:
    """For a run whose process was killed, `status RUN` says its process is gone and
    `status RUN --format json` says `"process_alive": false` beside `"state": "running"`."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rows = [{"legacy_id": f"L{i}", "account_id": account(i), "issue": "MIG-1"}
            for i in range(6)]
    watch = ArrivalWatch.install(sandbox)
    process = await rehearsal.spawn("run", rehearsal.write_job("killed", rows, COMMENT))
    watch.at(1, lambda: process.signal(signal.SIGKILL))
    killed = await process.wait()
    assert killed.code == -signal.SIGKILL
    run_id = run_id_of(killed)
    text = await rehearsal.cli("status", run_id)
    assert "running? (its process is gone" in text.out
    data = json.loads((await rehearsal.cli("status", run_id, "--format", "json")).out)
    assert (data["state"], data["process_alive"]) == ("running", False)
