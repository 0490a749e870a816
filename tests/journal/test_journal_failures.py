"""A journal that is corrupt, can't be opened, is read-only, or whose disk fills mid-run: the
real command prints one line naming the file and what to do and exits 6; the data journaled
before is safe, and once the disk is fixed the same command resumes without repeating work.

The read-only and full-disk cases mount a small tmpfs, which needs root: they skip otherwise,
except under CI=true, where they fail (CI runs as root)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runner.errors import ExitCode
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.clirun import example_folder, forge_runner, one_line
from tests.e2e.harness import (
    ArrivalWatch,
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
)


def _rows(n: int) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{i:03d}", "account_id": account(i % 7),
             "issue": f"MIG-{i % 3 + 1}"} for i in range(n)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a tmpfs of 8 MB, unmounted after the test."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: mounting a tmpfs must work there")
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; the filler's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1):  # big blocks, then the last bytes one at a time
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize(
    ("journal", "said"),
    [("garbage", "it is not a journal, or it is damaged (file is not a database); restore it "
                 "from a backup, or move it aside"),
     ("folder", "it can't be opened (unable to open database file); check that it is a "
                "file")],
)
def test_a_corrupt_or_unopenable_journal_exits_6_naming_it(tmp_path: Path, journal: str,
                                                           said: str) -> None:
    """`run` and `status` on a journal that is not SQLite, or a folder where it should be,
    exit 6 with one line naming the file and what to do."""
    config = example_folder(tmp_path)
    path = tmp_path / "forge-runner.db"
    if journal == "garbage":
        path.write_bytes(b"not a database, not even close " * 200)
    else:
        path.mkdir()
    for args in (("run", "jobs/example-migration.toml"), ("status",)):
        result = forge_runner(*args, "--config", config, cwd=tmp_path)
        assert result.returncode == ExitCode.JOURNAL == 6, result.stderr
        assert one_line(result.stderr).startswith(f"forge-runner: journal {path}: {said}")


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(3), port=0) as running:
        yield running


async def _remount(folder: Path, mode: str) -> None:
    proc = await asyncio.create_subprocess_exec("mount", "-o", f"remount,{mode}", str(folder))
    assert await proc.wait() == 0


def _journal_on(rehearsal: Rehearsal, folder: Path) -> Path:
    journal = folder / "forge-runner.db"
    text = rehearsal.config_path.read_text()
    rehearsal.config_path.write_text(text.replace('journal = "forge-runner.db"',
                                                  f'journal = "{journal}"'))
    return journal


@pytest.mark.slow
async def test_a_read_only_journal_exits_6_and_resumes_once_writable(
    tmp_path: Path, sandbox: RunningSandbox, small_disk: Path
) -> None:
    """A run whose journal's file system is read-only exits 6 naming the file, sending
    nothing; made writable again, the same command finishes the run."""
    rehearsal = Rehearsal.start(tmp_path, sandbox, concurrency=4)
    journal = _journal_on(rehearsal, small_disk)
    job = rehearsal.write_job("ro", _rows(12), COMMENT)
    watch = ArrivalWatch.install(sandbox)
    first = await rehearsal.spawn("run", job)
    watch.at(4, lambda: first.signal(signal.SIGKILL))
    assert (await first.wait()).code == -signal.SIGKILL
    await _remount(small_disk, "ro")
    sent = watch.seen
    refused = await rehearsal.cli("run", job)
    assert refused.code == ExitCode.JOURNAL, refused.text
    line = one_line(refused.err)
    assert line.startswith(f"forge-runner: journal {journal}")
    assert "it can't be written (Read-only file system); make the file and its folder " \
           "writable, then run the same command again to resume" in line
    assert watch.seen == sent
    await _remount(small_disk, "rw")
    done = await rehearsal.cli("run", job)
    assert done.code == 0, done.text
    assert "resuming run" in done.out
    assert sorted(comments_by_item(rehearsal.jira).values()) == [1] * 12


@pytest.mark.slow
async def test_a_disk_full_mid_run_exits_6_and_the_same_command_resumes(
    tmp_path: Path, sandbox: RunningSandbox, small_disk: Path
) -> None:
    """When the journal's disk fills mid-run, the run stops with exit 6 and one line saying
    the disk is full and to free space; once freed, the same command finishes the run with
    every comment made exactly once."""
    rehearsal = Rehearsal.start(tmp_path, sandbox, concurrency=4)
    journal = _journal_on(rehearsal, small_disk)
    job = rehearsal.write_job("full", _rows(60), COMMENT)
    watch = ArrivalWatch.install(sandbox)
    filled: list[Path] = []
    watch.at(20, lambda: filled.append(_fill(small_disk)))
    stopped = await rehearsal.cli("run", job)
    assert filled, stopped.text
    assert stopped.code == ExitCode.JOURNAL, stopped.text
    line = one_line(stopped.err)
    assert f"journal {journal}: the disk is full (database or disk is full); free some " \
           "space, then run the same command again to resume" in line
    assert len(comments_by_item(rehearsal.jira)) < 60

    filled[0].unlink()
    done = await rehearsal.cli("run", job)
    assert done.code == 0, done.text
    assert "resuming run" in done.out
    assert sorted(comments_by_item(rehearsal.jira).values()) == [1] * 60


def test_fill_leaves_no_room(tmp_path: Path, small_disk: Path) -> None:
    """The helper that fills a disk leaves no byte free (else the full-disk test proves
    nothing)."""
    _fill(small_disk)
    with pytest.raises(OSError, match="No space left"):
        (small_disk / "more").write_bytes(b"\0" * 4096)
