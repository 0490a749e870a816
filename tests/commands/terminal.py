"""Running `forge-runner` as a real process with stdout on a terminal (a pty) or a pipe.

``run_on_pty`` gives the child a pseudo-terminal of a known size as stdout (stderr stays a
pipe, so stdout holds only what the console printed) and reads it to the end; ``run_piped`` is
the same command with stdout and stderr piped, as under cron.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

COLUMNS, ROWS = 200, 50


@dataclass(frozen=True)
class Ran:
    """How the process ended and what it printed on stdout and stderr."""

    code: int
    out: str
    err: str


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without colour overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "COLUMNS", "TERM")}
    env.update(extra)
    return env


async def run_piped(*args: str, cwd: Path, env: dict[str, str] | None = None,
                    merged: bool = False) -> Ran:
    """``python -m runner ARGS`` with stdout and stderr piped (``merged``: as ``2>&1``, all in
    ``out``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", *args, cwd=cwd, env=env or child_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merged else asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), (err or b"").decode())


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the pty is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def run_on_pty(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Ran:
    """``python -m runner ARGS`` with stdout on a ``COLUMNS`` x ``ROWS`` xterm pty."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", *args, cwd=cwd,
            env=env or child_env(TERM="xterm-256color"),
            stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(slave)
    try:
        reading = asyncio.get_running_loop().run_in_executor(None, _read_all, master)
        assert process.stderr is not None
        err = await process.stderr.read()
        code = await process.wait()
        out = await reading
    finally:
        os.close(master)
    return Ran(code, out.decode().replace("\r\n", "\n"), err.decode())
