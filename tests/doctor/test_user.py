"""`forge-runner doctor --site S --user ACCOUNT` against the sandbox over loopback."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from runner.cli import main
from runner.config.configfile import load_config
from runner.doctor.user import check_user
from runner.errors import InputError
from runner.remote.installation_tokens import TokenStore
from runner.remote.loopback import build_token_app
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import MintLimit, SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    CLOUD_B,
    INSTALLATION_A,
    UNKNOWN_ACCOUNT,
    StartSandbox,
    site_ari,
)

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
USER = ACME_ACTIVE[0]
SERVE_SECRET = "loopback-secret-0123456789abcdef"


def write_config(
    folder: Path,
    sb: RunningSandbox,
    *,
    environment: str = "dev",
    context_ari: str | None = None,
    api_base_url: str | None = None,
    system_token: str | None = None,
    token_table: str = 'file = "system-token"',
) -> Path:
    """A runner config with site acme of ``sb`` and a `file` system-token source beside it."""
    token = system_token if system_token is not None else issue_system_token(sb.config, "dev")
    (folder / "system-token").write_text(token)
    ari = f'context_ari = "{context_ari}"\n' if context_ari else ""
    path = folder / "config.toml"
    path.write_text(f"""
[runner]
journal = "journal.db"

[environments.{environment}]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"

[environments.{environment}.system_token]
{token_table}

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{api_base_url or sb.jira_base(CLOUD_A)}"
installation_id = "{INSTALLATION_A}"
environment = "{environment}"
{ari}""")
    return path


async def doctor(config: Path, user: str = USER) -> tuple[int, str]:
    out = io.StringIO()
    code = await check_user(load_config(config), "acme", user, out)
    # Redaction runs on every line: nothing doctor says on its own may look like a secret.
    assert "[REDACTED]" not in out.getvalue()
    return code, out.getvalue()


def minted_tokens(sb: RunningSandbox) -> list[str]:
    return list(sb.world.user_tokens)


async def test_active_user_passes_both_steps(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """An active user: exit 0, what was sent and what came back shown, and no token printed."""
    config = write_config(tmp_path, sandbox)
    code, out = await doctor(config)
    assert code == 0
    assert f"POST {sandbox.gateway_url}" in out
    assert f"[ari:cloud:jira:{CLOUD_A}:workspace/{CLOUD_A}]" in out
    assert f"userId       {USER}" in out
    assert "ttl 3600 s, request_id=" in out and "trace_id=" in out
    assert f"GET {sandbox.jira_base(CLOUD_A)}/rest/api/3/myself" in out
    assert f"Jira says this token is {USER}" in out
    assert sandbox.world.mints_accepted["dev"] == 1
    tokens = minted_tokens(sandbox)
    assert tokens and all(t not in out for t in tokens)
    assert (tmp_path / "system-token").read_text() not in out


@pytest.mark.parametrize(
    ("account", "said", "fix"),
    [
        (ACME_DEACTIVATED, "deactivated", "reactivate it"),
        (ACME_NO_ACCESS, "does not have access", "only its contributors"),
        (UNKNOWN_ACCOUNT, "not found", "no such account on site acme"),
    ],
)
async def test_user_refusals_are_explained(
    sandbox: RunningSandbox, tmp_path: Path, account: str, said: str, fix: str
) -> None:
    """A user the gateway won't mint for: exit 1, the gateway's reason and the fix for it."""
    code, out = await doctor(write_config(tmp_path, sandbox), account)
    assert code == 1
    assert said in out
    assert fix in out
    assert "answer       UserRefused: request_id=" in out
    assert "3. Call Jira" not in out


async def test_wrong_context_ari_blocks_with_the_four_checks(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A site ARI instead of the workspace ARI: exit 3, the ARI sent and the four checks."""
    wrong = site_ari(CLOUD_A)
    code, out = await doctor(write_config(tmp_path, sandbox, context_ari=wrong))
    assert code == 3
    assert "Could not load permissions for app user" in out
    assert f"context ARIs sent: [{wrong}]" in out
    assert f"expected ari:cloud:jira:{CLOUD_A}:workspace/{CLOUD_A}" in out
    for check in ("1. ARI form", "2. Impersonation scopes", "3. Deployed",
                  "4. Installation upgraded"):
        assert check in out
    assert sandbox.world.mints_refused["context"] == 1


async def test_missing_impersonation_scopes_block(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """An app without impersonation scopes: exit 3; the ARI form is fine, so say so."""
    token = issue_system_token(sandbox.config, "noimp")
    config = write_config(tmp_path, sandbox, environment="noimp", system_token=token)
    code, out = await doctor(config)
    assert code == 3
    assert "the ARI has the workspace form" in out
    assert "allowImpersonation: true" in out
    assert sandbox.world.mints_refused["impersonation"] == 1


async def test_jira_401_names_the_site_mismatch(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A token used on another site's Jira: exit 1, Jira's 401 explained with the base URL."""
    config = write_config(tmp_path, sandbox, api_base_url=sandbox.jira_base(CLOUD_B))
    code, out = await doctor(config)
    assert code == 1
    assert "minted: ttl" in out
    assert "Jira answered HTTP 401 (FAILURE_CLIENT_AUTH_MISMATCH)" in out
    assert f"cloud ID {CLOUD_A}" in out
    assert f"sites.acme.api_base_url ({sandbox.jira_base(CLOUD_B)})" in out


async def test_jira_404_points_at_the_base_url(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A base URL naming no site: exit 1, Jira's 404 and its message, and what to check."""
    nowhere = sandbox.jira_base("11111111-2222-4333-8444-555555555555")
    code, out = await doctor(write_config(tmp_path, sandbox, api_base_url=nowhere))
    assert code == 1
    assert "Jira answered HTTP 404: No Jira site with cloud ID" in out
    assert "check sites.acme.api_base_url" in out


async def test_missing_system_token_file_blocks(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """No system-token file: exit 3 naming the file and what to do; nothing is sent."""
    config = write_config(tmp_path, sandbox)
    (tmp_path / "system-token").unlink()
    code, out = await doctor(config)
    assert code == 3
    assert f"file {tmp_path / 'system-token'}" in out
    assert "write a fresh system token into" in out
    assert "scheduledTrigger" in out
    assert sandbox.world.mints_accepted["dev"] == 0
    assert "2. Mint" not in out


async def test_serve_source_is_named(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A system token from a serve process: doctor names that process and its installation,
    and passes with the token it hands out."""
    store = TokenStore(time.time)
    store.offer(INSTALLATION_A, issue_system_token(sandbox.config, "dev"))
    (tmp_path / "serve-secret").write_text(SERVE_SECRET)
    runner = web.AppRunner(build_token_app(store, SERVE_SECRET), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        config = write_config(tmp_path, sandbox, token_table=(
            f'serve = "{url}"\ninstallation_id = "{INSTALLATION_A}"\n'
            'secret_file = "serve-secret"'))
        code, out = await doctor(config)
    finally:
        await runner.cleanup()
    assert (f"source       the serve process at {url} (installation {INSTALLATION_A}) "
            "(environments.dev.system_token.serve)") in out
    assert code == 0


async def test_expired_system_token_blocks(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """An expired system token: exit 3, saying it expired; no mint is sent with it."""
    expired = issue_system_token(sandbox.config, "dev", ttl_s=-120)
    code, out = await doctor(write_config(tmp_path, sandbox, system_token=expired))
    assert code == 3
    assert "expired" in out
    assert sandbox.report()["mints"]["accepted"] == {}


async def test_gateway_401_is_explained(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A system token the gateway refuses (HTTP 401): exit 3 and what to check."""
    foreign = replace(sandbox.config, signing_secret="another-apps-secret")
    config = write_config(tmp_path, sandbox, system_token=issue_system_token(foreign, "dev"))
    code, out = await doctor(config)
    assert code == 3
    assert "the gateway refused the system token with HTTP 401 (expired, revoked" in out
    assert "SystemTokenRejected: request_id=" in out


async def test_rate_limited_mint_is_reported(
    sandbox_config: SandboxConfig, start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """A spent mint budget: exit 1 at once, with the gateway's Retry-After."""
    tight = replace(sandbox_config, mint_limit=MintLimit(limit=1, window_s=600.0))
    async with start_sandbox(tight) as sb:
        config = write_config(tmp_path, sb)
        assert (await doctor(config))[0] == 0
        code, out = await doctor(config)
    assert code == 1
    assert "rate limited (retry_after)" in out
    assert "Retry-After: 600 s" in out
    assert sb.world.mints_rejected["dev"] == 1


@pytest.mark.parametrize(
    ("site", "user", "said"),
    [("nowhere", USER, "expected a site of"), ("acme", "ada@example.com", "e-mail address")],
)
async def test_bad_site_or_account_is_input_error(
    sandbox: RunningSandbox, tmp_path: Path, site: str, user: str, said: str
) -> None:
    """An unknown site or a malformed account ID is refused before anything is sent."""
    config = load_config(write_config(tmp_path, sandbox))
    with pytest.raises(InputError, match=said):
        await check_user(config, site, user, io.StringIO())
    assert sandbox.world.mints_accepted["dev"] == 0




@pytest.mark.usefixtures("restore_logging")
async def test_cli_doctor_exit_codes(
    sandbox: RunningSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command: 0 for a user who passes, 2 for bad input, the minted token nowhere."""
    config = str(write_config(tmp_path, sandbox))

    def cli(*argv: str) -> int:
        return main(["doctor", *argv])

    assert await asyncio.to_thread(cli, "--site", "acme", "--user", USER,
                                          "--config", config) == 0
    out, err = capsys.readouterr()
    assert "All good: forge-runner can act as" in out
    assert all(t not in out + err for t in minted_tokens(sandbox))
    assert await asyncio.to_thread(cli, "--site", "acme", "--config", config) == 2
    assert "give --site S --user ACCOUNT" in capsys.readouterr().err
    assert await asyncio.to_thread(cli, "--site", "nowhere", "--user", USER,
                                          "--config", config) == 2
    assert "expected a site of" in capsys.readouterr().err
