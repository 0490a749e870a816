"""``forge-runner serve`` as a process: checks first, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from runner.config.configfile import load_config
from runner.remote.server import serve_remote
from runner.sandbox.testing import StartSandbox, pattern_account
from tests.remote.helpers import APP_ID, forge_of, forge_sandbox_config, write_serve_config

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def test_serve_without_a_serve_section_exits_2(tmp_path: Path) -> None:
    """A config with no [serve] section: exit 2, naming the section; nothing listens."""
    config = tmp_path / "c.toml"
    config.write_text('[environments.dev]\napp_id = "ari:cloud:ecosystem::app/'
                      '8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"\n[environments.dev.system_token]\n'
                      'env = "X"\n')
    done = subprocess.run([sys.executable, "-m", "runner", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "serve: expected a [serve] section" in done.stderr


async def test_serve_process_answers_and_stops_on_sigterm(tmp_path: Path,
                                                          start_sandbox: StartSandbox) -> None:
    """The process serves the routes (a verified invocation 200, a bad one 401) and exits 0 on
    SIGTERM."""
    async with start_sandbox(forge_sandbox_config()) as sb:
        config = write_serve_config(tmp_path, sb)
        command = [sys.executable, "-m", "runner", "serve", "--config", str(config),
                   "--port", "0", "--token-port", "0", "--log-format", "json"]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            text = ""
            async with asyncio.timeout(30):
                async for chunk in process.stderr:
                    text += chunk.decode()
                    if match := LISTENING.search(text):
                        break
            assert match is not None
            url = match.group(1)
            forge = forge_of(sb)
            async with aiohttp.ClientSession() as session:
                fit = forge.fit("acme")
                async with session.post(url + "/forge/refresh", json={}, headers={
                        "Authorization": f"Bearer {fit}",
                        "x-forge-oauth-system": forge.system_token()}) as resp:
                    assert resp.status == 200
                async with session.post(url + "/forge/refresh", json={},
                                        headers={"Authorization": "Bearer not-a-fit"}) as resp:
                    assert resp.status == 401
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_standalone_run_takes_its_token_from_serve(
        tmp_path: Path, start_sandbox: StartSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forge-runner run` on the same host, its system token source the serve process over
    loopback (shared secret from an environment variable): the job runs to the end."""
    env_name = "FORGE_RUNNER_TEST_SERVE_SECRET"
    monkeypatch.setenv(env_name, "a-shared-secret-for-this-test-only")
    async with start_sandbox(forge_sandbox_config()) as sb:
        serve_config = load_config(write_serve_config(
            tmp_path / "serve", sb, token_extra=f'secret_env = "{env_name}"'))
        async with serve_remote(serve_config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            inst = forge.installation_id("acme")
            cloud = sb.config.sites["acme"].cloud_id
            folder = tmp_path / "run"
            folder.mkdir()
            (folder / "job.toml").write_text(
                'name = "standalone"\nsite = "acme"\n[source]\nrows = [{account_id = "'
                f'{pattern_account(1)}"}}]\n[[actions]]\ntype = "user.property.set"\n'
                'key = "k"\nvalue = { v = "1" }\n')
            (folder / "config.toml").write_text(f"""[runner]
journal = "journal.db"
[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"
[environments.dev.system_token]
serve = "{remote.token_url}"
installation_id = "{inst}"
secret_env = "{env_name}"
max_wait_s = 5.0
[sites.acme]
cloud_id = "{cloud}"
api_base_url = "{sb.jira_base(cloud)}"
installation_id = "{inst}"
""")
            command = [sys.executable, "-m", "runner", "run", "job.toml", "--config",
                       "config.toml", "--quiet"]
            process = await asyncio.create_subprocess_exec(
                *command, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            out, err = await process.communicate()
            held = remote.store.token(inst)
        output = (out + err).decode()
        assert process.returncode == 0, output
        props = sb.world.parts["jira"].site(cloud).user_properties
        assert props == {pattern_account(1): {"k": {"v": "1"}}}
        assert held is not None and held.token not in output
