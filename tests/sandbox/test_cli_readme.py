"""The README's sandbox commands work as printed against `forge-runner sandbox`."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from runner.sandbox.testing import repo_root

README = repo_root() / "README.md"
EXAMPLE_PORT = "127.0.0.1:8765"


def readme_sandbox_shell() -> str:
    """The shell blocks of the README's "The sandbox" section, after the one that starts it."""
    section = README.read_text().split("\n## The sandbox\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks[0].strip().endswith("sandbox --config config.example.toml")
    return "\n".join(blocks[1:])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands use curl")
async def test_readme_mint_and_myself_work_as_printed() -> None:
    """The README's curl mint gets a token, and its /myself call answers as that user."""
    script = readme_sandbox_shell()
    assert EXAMPLE_PORT in script
    if not (repo_root() / ".venv" / "bin" / "forge-runner").exists():
        script = script.replace(".venv/bin/forge-runner", f"{sys.executable} -m runner")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "sandbox", "--config", "config.example.toml",
        "--port", "0", cwd=repo_root(), stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        first = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        address = first.rsplit("http://", 1)[1].strip()
        # The README names the configured port; this copy serves on a free one.
        shell = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", script.replace(EXAMPLE_PORT, address),
            cwd=Path(repo_root()), stdout=asyncio.subprocess.PIPE,
        )
        out = (await asyncio.wait_for(shell.communicate(), 60))[0].decode()
        assert shell.returncode == 0
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.communicate(), 60)
    assert '"success": true' in out
    assert '"accountId": "5b10ac8d82e05b22cc7d4ef5"' in out
    assert '"GET /rest/api/3/myself": 1' in out
