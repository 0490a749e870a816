"""``forge-runner sandbox``: serving from a config file, and printing system tokens."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from runner.cli import main
from runner.sandbox.app import serve
from runner.sandbox.cli import read_sandbox_config
from runner.sandbox.config import SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import mint_request, repo_root, workspace_ari

EXAMPLE = repo_root() / "config.example.toml"
URL_LINE = re.compile(r"forge-runner sandbox serving on (http://127\.0\.0\.1:\d+)")


async def _mint(url: str, system_token: str, cloud_id: str, user: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {system_token}"}
    body = mint_request([workspace_ari(cloud_id)], user)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/graphql", json=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        result: dict[str, Any] = (await resp.json())["data"]["offlineUserAuthToken"]
        return result


def _an_active_user(config: SandboxConfig) -> tuple[str, str]:
    """The cloud ID and account ID of the first active user of the config's first site."""
    site = next(iter(config.sites.values()))
    user = next(u for u in site.users if u.state == "active")
    return site.cloud_id, user.account_id


async def test_system_token_prints_a_token_the_gateway_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sandbox system-token` prints one line, a token the example config's gateway mints with."""
    code = main(["sandbox", "system-token", "--config", str(EXAMPLE), "--environment", "dev"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    token = out.strip()
    async with serve(read_sandbox_config(EXAMPLE), port=0) as sb:
        cloud_id, user = _an_active_user(sb.config)
        result = await _mint(sb.url, token, cloud_id, user)
    assert result["success"] is True


def test_system_token_ttl_and_config_before_the_action(capsys: pytest.CaptureFixture[str]) -> None:
    """--ttl sets the lifetime, and --config works before the action word as well as after it."""
    code = main(
        ["sandbox", "--config", str(EXAMPLE), "system-token", "--environment", "dev", "--ttl", "60"]
    )
    assert code == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert claims["client_id"] == "dev"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "--config"),
        ("[sandbox\n", "valid TOML"),
        ("[runner]\nconcurrency = 1\n", "[sandbox] table"),
        ('[sandbox.mint_limit]\nalgorithm = "lru"\n', "sandbox.mint_limit.algorithm"),
        ("[sandbox]\nprot = 1\n", "sandbox.prot"),
    ],
    ids=["missing-file", "bad-toml", "no-sandbox-table", "bad-value", "unknown-key"],
)
def test_config_errors_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, says: str
) -> None:
    """An unusable config exits 2, naming the file and what is wrong; stdout stays empty."""
    path = tmp_path / "absent.toml" if text is None else _write(tmp_path, text)
    code = main(["sandbox", "system-token", "--config", str(path), "--environment", "dev"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert str(path) in captured.err
    assert says in captured.err


def test_unknown_environment_and_missing_config_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An environment the config lacks, or no --config at all, exits 2 with a message."""
    assert main(["sandbox", "system-token", "--config", str(EXAMPLE), "--environment", "x"]) == 2
    assert "sandbox.environments.x" in capsys.readouterr().err
    assert main(["sandbox", "system-token", "--environment", "dev"]) == 2
    assert "--config" in capsys.readouterr().err


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "sandbox", "--config", str(EXAMPLE), *args,
        cwd=repo_root(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_serves_the_example_config_until_signalled(stop: signal.Signals) -> None:
    """`forge-runner sandbox --config config.example.toml` serves, mints, exits 0 on a signal."""
    proc = await _start("--port", "0")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = URL_LINE.match(first)
        assert match, first
        url = match.group(1)
        config = read_sandbox_config(EXAMPLE)
        cloud_id, user = _an_active_user(config)
        result = await _mint(url, issue_system_token(config, "dev"), cloud_id, user)
        assert result["success"] is True
        proc.send_signal(stop)
        rest = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "environment dev" in rest and "site acme" in rest
    assert rest.rstrip().endswith("forge-runner sandbox stopped")
    await proc.stderr.read()


@pytest.mark.slow
async def test_port_in_use_exits_2_naming_the_port() -> None:
    """Serving on a port already taken exits 2 and names sandbox.port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = await _start("--port", str(taken.getsockname()[1]))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "sandbox.port" in err.decode()
    assert b"serving on" not in out
