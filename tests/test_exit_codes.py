"""Every exit code the README's table lists, through the real command: the code, and the one
line that says what happened and what to do.

One case per code (0 twice: a run all done, and output into a closed pipe), each run as a user
would, ``forge-runner`` as a process against a sandbox served by the test. The README's
paragraph and ``--help`` are parsed, so a code added to either without a case here, or a case
for a code they do not list, fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.errors import ExitCode
from runner.sandbox.app import RunningSandbox
from tests.clirun import LIMIT_S, ROOT, one_line
from tests.e2e.harness import ArrivalWatch, Exit, Rehearsal, account

COMMENT = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "Migrated {legacy_id}"\n'


def _rows(*issues: str) -> list[dict[str, str]]:
    return [{"legacy_id": f"L{n}", "account_id": account(1), "issue": issue}
            for n, issue in enumerate(issues)]


def _closing(ended: Exit) -> str:
    """The closing line of a run (the last of stdout); no traceback anywhere."""
    assert "Traceback" not in ended.text, ended.text
    return ended.out.rstrip().splitlines()[-1]


def _refusal(ended: Exit) -> str:
    """The one ``forge-runner:`` line of a command refused before it did anything."""
    assert not ended.out, ended.out
    return one_line(ended.err)


async def _process(*argv: str, cwd: Path, stdout: int = subprocess.DEVNULL,
                   env: dict[str, str] | None = None) -> tuple[int, str]:
    """``argv`` run to its end (the sandbox serving meanwhile): its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdout=stdout,
                                                stdin=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), LIMIT_S)
    return await proc.wait(), err.decode()


async def _all_done(r: Rehearsal) -> tuple[int, str]:
    ended = await r.cli("run", r.write_job("fine", _rows("MIG-1", "MIG-1"), COMMENT))
    return ended.code, _closing(ended)


async def _closed_pipe(r: Rehearsal) -> tuple[int, str]:
    """`status --format json` into a pipe whose reader is gone (``| head``): nothing on
    stderr, so the line is empty."""
    await r.cli("run", r.write_job("fine", _rows("MIG-1"), COMMENT))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return await _process(sys.executable, "-m", "runner", "status", "--format", "json",
                              "--config", str(r.config_path), cwd=r.folder, stdout=write_end)
    finally:
        os.close(write_end)


async def _items_failed(r: Rehearsal) -> tuple[int, str]:
    ended = await r.cli("run", r.write_job("fails", _rows("MIG-1", "NOPE-9"), COMMENT))
    return ended.code, _closing(ended)


async def _invalid_input(r: Rehearsal) -> tuple[int, str]:
    """A job whose action names a column its CSV does not have."""
    job = r.write_job("bad", [{"legacy_id": "L1", "account_id": account(1)}], COMMENT)
    ended = await r.cli("run", job)
    return ended.code, _refusal(ended)


async def _blocked(r: Rehearsal) -> tuple[int, str]:
    (r.folder / "system-token").unlink()
    ended = await r.cli("run", r.write_job("blocked", _rows("MIG-1"), COMMENT))
    return ended.code, _closing(ended)


async def _already_running(r: Rehearsal) -> tuple[int, str]:
    job = r.write_job("overlap", _rows("MIG-1", "MIG-1", "MIG-1"), COMMENT)
    watch = ArrivalWatch.install(r.sandbox)
    first = await r.spawn("run", job)
    # Frozen, its lock held, the moment its first comment arrives.
    watch.at(1, lambda: first.signal(signal.SIGSTOP))
    await watch.event_after(1).wait()
    try:
        second = await r.cli("run", job)
    finally:
        first.signal(signal.SIGCONT)
    assert (await first.wait()).code == 0
    return second.code, _refusal(second)


async def _nothing_done(r: Rehearsal) -> tuple[int, str]:
    (r.folder / "empty.csv").write_text("legacy_id,account_id,issue\n")
    job = r.folder / "empty.toml"
    job.write_text(f'name = "empty"\nsite = "acme"\n\n[source]\ncsv = "empty.csv"\n\n{COMMENT}')
    ended = await r.cli("run", job)
    return ended.code, _closing(ended)


async def _journal(r: Rehearsal) -> tuple[int, str]:
    r.journal_path.write_bytes(b"not a database, not even close " * 200)
    ended = await r.cli("run", r.write_job("fine", _rows("MIG-1"), COMMENT))
    return ended.code, _refusal(ended)


async def _bug(r: Rehearsal) -> tuple[int, str]:
    """A command that raises what no code expects (a test-only command module): its
    traceback, then one line asking for a report."""
    (r.folder / "boom_command.py").write_text(
        "def add_parser(sub):\n"
        "    p = sub.add_parser('boom')\n"
        "    p.set_defaults(func=lambda args: 1 / 0)\n")
    script = ("import sys, runner.cli as cli\n"
              "cli.COMMAND_MODULES += ('boom_command',)\n"
              "sys.exit(cli.main(['boom']))\n")
    env = {**os.environ, "PYTHONPATH": f"{r.folder}{os.pathsep}{ROOT}"}
    code, stderr = await _process(sys.executable, "-c", script, cwd=r.folder, env=env)
    assert "Traceback" in stderr and "ZeroDivisionError" in stderr
    return code, stderr.rstrip().splitlines()[-1]


def _stopped_by(signum: signal.Signals) -> Callable[[Rehearsal], Awaitable[tuple[int, str]]]:
    async def case(r: Rehearsal) -> tuple[int, str]:
        """The signal at the first comment's arrival: the run drains and says how to resume."""
        job = r.write_job("stopped", _rows(*["MIG-1"] * 6), COMMENT)
        watch = ArrivalWatch.install(r.sandbox)
        process = await r.spawn("run", job)
        watch.at(1, lambda: process.signal(signum))
        ended = await process.wait()
        return ended.code, _closing(ended)

    return case


@dataclass(frozen=True)
class Case:
    code: int
    name: str
    produce: Callable[[Rehearsal], Awaitable[tuple[int, str]]]
    line: str  # a regular expression the whole line matches; RUN stands for the run's ID


RUN = r"r-\d{8}-[0-9a-f]+"
CASES = [
    Case(0, "all-done", _all_done, rf"run {RUN}: all done \(2 items\)"),
    Case(0, "closed-pipe", _closed_pipe, ""),
    Case(1, "items-failed", _items_failed,
         rf"run {RUN}: 1 done, 1 failed: some items failed \(exit 1\); see `forge-runner "
         rf"report {RUN}`, then `forge-runner retry {RUN}` puts the 1 failed, skipped and "
         "blocked back in line"),
    Case(2, "invalid-input", _invalid_input,
         r"forge-runner: /\S+/bad\.toml: actions\[0\]\.issue: expected placeholders naming "
         r"source columns \(account_id, legacy_id\), found \{issue\}"),
    Case(3, "blocked", _blocked, rf"run {RUN}: an environment is blocked \(exit 3\)"),
    Case(4, "already-running", _already_running,
         rf"forge-runner: run {RUN} is already running \(pid \d+ on \S+\); not starting it "
         "twice"),
    Case(5, "nothing-done", _nothing_done,
         rf"run {RUN}: 0 items: the source has no rows, nothing to do \(exit 5\); check the "
         "source's export, or set allow_empty = true in the job if that is expected"),
    Case(6, "journal", _journal,
         r"forge-runner: journal .*forge-runner\.db: it is not a journal, or it is damaged "
         r"\(file is not a database\); restore it from a backup, or move it aside \(or set "
         r"\[runner\] journal to another file\) to start afresh"),
    Case(70, "bug", _bug,
         "forge-runner: unexpected error, a bug: please report it with the traceback above.*"),
    Case(130, "sigint", _stopped_by(signal.SIGINT),
         rf"run {RUN} interrupted; run the same command again to resume "
         rf"\(or: forge-runner resume {RUN}\)"),
    Case(143, "sigterm", _stopped_by(signal.SIGTERM),
         rf"run {RUN} interrupted; run the same command again to resume "
         rf"\(or: forge-runner resume {RUN}\)"),
]


def _readme_codes() -> set[int]:
    """The codes in bold in the README's paragraph that starts with "Exit codes:"."""
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Exit codes:"):].split("\n\n", 1)[0]
    return {int(code) for code in re.findall(r"\*\*(\d+)\*\*", paragraph)}


def _help_codes() -> set[int]:
    """The codes ``forge-runner --help`` lists after "Exit codes:"."""
    shown = subprocess.run([sys.executable, "-m", "runner", "--help"], capture_output=True,
                           text=True, timeout=LIMIT_S, check=True).stdout
    listed = " ".join(shown[shown.index("Exit codes:"):].split())
    return {int(code) for code in re.findall(r"(?:: |, )(\d+) ", listed)}


def test_every_listed_code_has_a_case_and_every_case_a_listed_code() -> None:
    """The README's exit codes, ``--help``'s and ``ExitCode``'s are the same set, and each has
    a case below (so the table and these tests can't drift apart)."""
    codes = {case.code for case in CASES}
    assert _readme_codes() == codes
    assert _help_codes() == codes
    assert {int(code) for code in ExitCode} == codes


@pytest.mark.parametrize("case", CASES, ids=[f"{c.code}-{c.name}" for c in CASES])
async def test_the_command_exits_with_the_code_and_one_line(
    tmp_path: Path, sandbox: RunningSandbox, case: Case
) -> None:
    """Each case of the exit-code table, through the real command, exits with its code and
    ends with its one line (what happened, what to do); no traceback but for a bug."""
    rehearsal = Rehearsal.start(tmp_path, sandbox, concurrency=1)
    code, line = await case.produce(rehearsal)
    assert code == case.code, line
    assert re.fullmatch(case.line, line), line
