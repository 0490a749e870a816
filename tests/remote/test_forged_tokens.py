"""A system token nobody vouched for never displaces the real ones: replays, forged exp, 401s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from runner.config.configfile import load_config
from runner.remote.installation_tokens import MAX_LIFETIME_S
from runner.remote.server import RunningRemote, serve_remote
from runner.sandbox.testing import StartSandbox
from tests.remote.helpers import forge_of, forge_sandbox_config, write_serve_config
from tests.remote.test_triggers import NIGHTLY, job_routes, write_template


def made_up_token(exp: float) -> str:
    """A JWT-shaped system token no gateway issued: its exp says whatever its maker wants."""
    return jwt.encode({"exp": int(exp), "client_id": "made-up"}, "m" * 32, algorithm="HS256")


async def post(remote: RunningRemote, path: str, fit: str, system_token: str
               ) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {fit}", "x-forge-oauth-system": system_token}
    async with (
        aiohttp.ClientSession() as session,
        session.post(remote.url + path, json={}, headers=headers) as resp,
    ):
        body = await resp.json()
        return resp.status, body if isinstance(body, dict) else {}


async def test_replayed_fit_and_forged_exp_are_refused(tmp_path: Path,
                                                       start_sandbox: StartSandbox) -> None:
    """A captured FIT sent again with a token whose exp is 2^40: 401; a fresh FIT with it:
    not kept; the real token stays and the next nightly run completes."""
    template = write_template(tmp_path, users=2)
    async with start_sandbox(forge_sandbox_config(triggers=(NIGHTLY,))) as sb:
        config = load_config(write_serve_config(tmp_path, sb, routes=job_routes(template)))
        async with serve_remote(config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            inst = forge.installation_id("acme")
            captured = forge.fit("acme", "refresh")
            real = forge.system_token()
            status, _ = await post(remote, "/forge/refresh", captured, real)
            assert status == 200
            forged = made_up_token(2**40)
            status, _ = await post(remote, "/forge/refresh", captured, forged)
            assert status == 401
            status, answer = await post(remote, "/forge/refresh",
                                        forge.fit("acme", "refresh"), forged)
            assert status == 200 and answer["token_kept"] is False
            held = remote.store.token(inst)
            assert held is not None and held.token == real
            await forge.trigger(NIGHTLY.key, "acme")
            (outcome,) = await remote.desk.wait_for_outcomes(1)
    assert outcome.exit_code == 0 and outcome.state == "finished", outcome


async def test_token_the_gateway_refuses_is_dropped_by_serve(tmp_path: Path,
                                                             start_sandbox: StartSandbox) -> None:
    """A plausible token the gateway answers 401 for displaced the real one: the run tells
    serve, which drops it and hands out the real runner-up; the run completes, and the
    refused token is never kept again."""
    template = write_template(tmp_path, users=2)
    sandbox = forge_sandbox_config(triggers=(NIGHTLY,), system_token_ttl_s=3600)
    async with start_sandbox(sandbox) as sb:
        # A short wait: a run that found no usable token ends blocked instead of waiting on.
        config = load_config(write_serve_config(tmp_path, sb, routes=job_routes(template),
                                                serve_extra="token_max_wait_s = 2.0"))
        async with serve_remote(config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            inst = forge.installation_id("acme")
            # Within Forge's 4 hours, and later than the real tokens' one hour.
            bad = made_up_token(time.time() + MAX_LIFETIME_S - 600)
            status, answer = await post(remote, "/forge/refresh", forge.fit("acme", "refresh"),
                                        bad)
            assert status == 200 and answer["token_kept"] is True
            await forge.trigger(NIGHTLY.key, "acme")
            (outcome,) = await remote.desk.wait_for_outcomes(1)
            held = remote.store.token(inst)
            assert held is not None and held.token != bad
            status, answer = await post(remote, "/forge/refresh", forge.fit("acme", "refresh"),
                                        bad)
            assert status == 200 and answer["token_kept"] is False
    assert outcome.exit_code == 0 and outcome.state == "finished", outcome
    assert any(m.cloud_id == sb.config.sites["acme"].cloud_id for m in forge.mints)
