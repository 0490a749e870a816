"""What the real command does when something outside the code goes wrong: one line naming it
and what to do, a documented exit code, never a traceback (a bug aside, which asks to be
reported). Each case runs `forge-runner` as a process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.journal import ItemRef, RunState, SqliteJournal
from tests.clirun import LIMIT_S, example_folder, forge_runner, one_line


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _with_port(config: Path, port: int) -> None:
    """Point the example config's sandbox, and the URLs naming it, at ``port``."""
    config.write_text(config.read_text().replace("8765", str(port)))


def _closed_pipe_run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``forge-runner ARGS`` writing into a pipe whose reader is already gone (``| head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                              stdin=subprocess.DEVNULL, stdout=write_end,
                              stderr=subprocess.PIPE, timeout=LIMIT_S, check=False)
    finally:
        os.close(write_end)


def test_plan_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`plan --json | head` whose reader has gone exits 0 and prints nothing on stderr."""
    config = example_folder(tmp_path)
    result = _closed_pipe_run("plan", "jobs/example-migration.toml", "--json", "--config",
                              config, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")


async def _fill(path: Path, job: Path, items: int) -> str:
    async with SqliteJournal(path) as journal:
        run = (await journal.open_run("migration", str(job), "j", "c", "")).run_id
        for n in range(items):
            ref = ItemRef(f"row-{n:05d}", 0, "acme", f"5ca1ab1e{n:016x}", "comment.add")
            await journal.mark_failed(run, ref, "HTTP 404", detail="Issue does not exist")
        await journal.finish_run(run, RunState.FINISHED)
    return run


def test_report_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`report RUN | head` whose reader has gone exits 0 and prints nothing on stderr, even
    with more items than a pipe holds."""
    journal = tmp_path / "forge-runner.db"
    run = asyncio.run(_fill(journal, tmp_path / "migration.toml", 2000))
    result = _closed_pipe_run("report", run, "--journal", journal, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")


@pytest.mark.parametrize("where", ["missing-folder/x/report.json", "a-file/report.json",
                                   "a-folder"])
def test_an_unwritable_report_path_stops_the_run_before_anything_is_sent(
    tmp_path: Path, where: str
) -> None:
    """`run --report PATH` where PATH can't be written exits 2 naming it, before any run is
    opened (no journal made) and so before anything is sent."""
    config = example_folder(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "missing-folder").write_text("a file where a folder is needed")
    result = forge_runner("run", "jobs/example-migration.toml", "--config", config,
                          "--report", where, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"forge-runner: --report {where}: ")
    assert "give a" in line
    assert not (tmp_path / "forge-runner.db").exists()


def test_report_output_that_cant_be_written_exits_2(tmp_path: Path) -> None:
    """`report RUN --output PATH` in a folder that does not exist exits 2 with one line."""
    journal = tmp_path / "forge-runner.db"
    run = asyncio.run(_fill(journal, tmp_path / "migration.toml", 1))
    result = forge_runner("report", run, "--journal", journal, "--output", "no/such/r.json",
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--output no/such/r.json: can't be written" in one_line(result.stderr)


@pytest.mark.slow
def test_the_embedded_sandbox_moves_off_a_taken_port_and_the_run_uses_it(
    tmp_path: Path, taken_port: int
) -> None:
    """With the configured sandbox port taken (the standalone sandbox is running), the
    embedded sandbox serves on a free port, says so in one line, and the run succeeds
    against it."""
    config = example_folder(tmp_path)
    _with_port(config, taken_port)
    result = forge_runner("run", "jobs/example-migration.toml", "--config", config,
                          "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"forge-runner: sandbox: http://127.0.0.1:{taken_port} is taken "
                           "(another sandbox?); serving this one on http://127.0.0.1:")
    assert "all done" in result.stdout


@pytest.mark.parametrize("flag", ["--port", "--token-port"])
def test_serve_on_a_port_in_use_exits_2(tmp_path: Path, taken_port: int, flag: str) -> None:
    """`serve` whose endpoint or token port is in use exits 2 with one line naming it."""
    config = example_folder(tmp_path)
    other = "--token-port" if flag == "--port" else "--port"
    result = forge_runner("serve", "--config", config, flag, str(taken_port), other, "0",
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == (f"forge-runner: {flag}: expected a port free to listen on "
                                f"(or 0 for any), found 127.0.0.1:{taken_port} (already in "
                                "use)")


def test_serve_on_a_configured_port_in_use_names_the_key(tmp_path: Path,
                                                         taken_port: int) -> None:
    """`serve` whose configured port is in use exits 2 naming the config and serve.port."""
    config = example_folder(tmp_path)
    config.write_text(config.read_text().replace("port = 8780", f"port = {taken_port}"))
    result = forge_runner("serve", "--config", config, "--token-port", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).startswith(
        f"forge-runner: {config}: serve.port: expected a port free to listen on")


def test_serve_with_an_unreadable_job_template_exits_2(tmp_path: Path) -> None:
    """`serve` whose job route names a template it can't read exits 2 naming the file,
    before listening."""
    config = example_folder(tmp_path)
    (tmp_path / "jobs" / "nightly-sync.toml").unlink()
    (tmp_path / "jobs" / "nightly-sync.toml").mkdir()
    result = forge_runner("serve", "--config", config, "--port", "0", "--token-port", "0",
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "nightly-sync.toml" in line and "expected a readable job template" in line


def test_serve_with_a_short_secret_exits_2(tmp_path: Path) -> None:
    """`serve` whose token-route secret is under 16 characters exits 2 naming where it is
    read from, before listening."""
    config = example_folder(tmp_path)
    config.write_text(config.read_text().replace('# secret_env = "FORGE_RUNNER_SERVE_SECRET"',
                                                 'secret_env = "FORGE_RUNNER_SERVE_SECRET"'))
    result = forge_runner("serve", "--config", config, "--port", "0", "--token-port", "0",
                          cwd=tmp_path, env={"FORGE_RUNNER_SERVE_SECRET": "short"})
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == (
        f"forge-runner: {config}: serve.token_endpoint: expected a secret of 16 or more "
        "characters in environment variable FORGE_RUNNER_SERVE_SECRET, found a shorter one")
