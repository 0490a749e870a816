"""The sandbox playing Forge: JWKS, FITs and system tokens, redeliveries, duplicates, schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from runner.config.configfile import load_config
from runner.remote.settings import serve_config
from runner.sandbox.config import ForgeTrigger, load_sandbox_config, sandbox_config
from runner.sandbox.systemtokens import verify_system_token
from runner.sandbox.testing import StartSandbox
from tests.remote.helpers import APP_ID, forge_of, forge_sandbox_config

REPO = Path(__file__).resolve().parents[2]
TICK = ForgeTrigger(key="tick", path="/tick", interval="hour")


@asynccontextmanager
async def fake_remote(answer: Callable[[list[Any]], Any]
                      ) -> AsyncIterator[tuple[str, list[Any]]]:
    """A remote on loopback answering each request with ``await answer(seen)`` (a status),
    ``seen`` holding every request so far as (path, headers, body)."""
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.headers), await request.json()))
        status = await answer(seen)
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


async def test_jwks_verifies_its_fits(start_sandbox: StartSandbox) -> None:
    """The JWKS route serves the key that verifies the FITs; the system token it sends is one
    the sandbox's gateway accepts."""
    async with start_sandbox(forge_sandbox_config()) as sb, aiohttp.ClientSession() as session:
        forge = forge_of(sb)
        async with session.get(sb.url + "/.well-known/jwks.json") as resp:
            jwks = await resp.json()
        (key,) = jwks["keys"]
        assert (key["kid"], key["alg"], key["kty"]) == (forge.kid, "RS256", "RSA")
        fit = forge.fit("globex", "tick")
        claims = jwt.decode(fit, jwt.PyJWK(key).key, algorithms=["RS256"], audience=APP_ID,
                            issuer="forge/invocation-token")
        assert claims["app"]["apiBaseUrl"] == sb.jira_base(sb.config.sites["globex"].cloud_id)
        assert claims["exp"] - claims["iat"] == 25
        env = verify_system_token(sb.config, forge.system_token(), now=sb.world.clock())
        assert env is not None and env.name == "dev"


async def test_non_2xx_and_late_answers_are_redelivered(start_sandbox: StartSandbox) -> None:
    """A 500, then an answer later than the timeout, then a 200: three deliveries, each with
    a fresh FIT, then no more."""
    config = forge_sandbox_config(triggers=(TICK,), answer_timeout_s=0.2)

    async def answer(seen: list[Any]) -> int:
        if len(seen) == 2:
            await asyncio.sleep(0.5)  # a slow remote: its answer comes after the timeout
        return 500 if len(seen) == 1 else 200

    async with start_sandbox(config) as sb, fake_remote(answer) as (url, seen):
        forge = forge_of(sb)
        forge.remote_url = url
        deliveries = await forge.trigger("tick", "acme", duplicate=False)
    assert [(d.attempt, d.status) for d in deliveries] == [(0, 500), (1, None), (2, 200)]
    fits = {headers["Authorization"] for _, headers, _ in seen}
    assert len(fits) == len(seen) == 3
    assert all(path == "/tick" for path, _, _ in seen)


async def test_an_unanswered_trigger_gives_up_after_four_redeliveries(
        start_sandbox: StartSandbox) -> None:
    """A remote that always answers 503 gets the first delivery and 4 redeliveries."""
    async def answer(seen: list[Any]) -> int:
        return 503

    async with start_sandbox(forge_sandbox_config(triggers=(TICK,))) as sb, \
            fake_remote(answer) as (url, seen):
        forge = forge_of(sb)
        forge.remote_url = url
        deliveries = await forge.trigger("tick", "acme", duplicate=False)
    assert [d.attempt for d in deliveries] == [0, 1, 2, 3, 4]
    assert len(seen) == 5


async def test_seeded_duplicates_replay(start_sandbox: StartSandbox) -> None:
    """With a duplicate rate, the same seed sends the same deliveries twice, run after run."""
    trigger = ForgeTrigger(key="tick", path="/tick", duplicate_rate=0.5)

    async def answer(seen: list[Any]) -> int:
        return 200

    patterns = []
    for _ in range(2):
        async with start_sandbox(forge_sandbox_config(triggers=(trigger,))) as sb, \
                fake_remote(answer) as (url, _):
            forge = forge_of(sb)
            forge.remote_url = url
            pattern = [len(await forge.trigger("tick", "acme")) for _ in range(12)]
            patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {1, 2}


async def test_schedule_delivers_each_installation_every_interval(
        start_sandbox: StartSandbox) -> None:
    """On a compressed clock, the trigger reaches every installed site, interval after
    interval, each in its own slot."""
    trigger = ForgeTrigger(key="tick", path="/tick", interval="fiveMinute", spread_s=60.0)
    config = forge_sandbox_config(triggers=(trigger,), time_scale=3000.0)
    three_each = asyncio.Event()

    async def answer(seen: list[Any]) -> int:
        ticks = [body["context"]["cloudId"] for path, _, body in seen if path == "/tick"]
        if len(set(ticks)) == 2 and min(ticks.count(c) for c in set(ticks)) >= 3:
            three_each.set()
        return 200

    async with start_sandbox(config) as sb, fake_remote(answer) as (url, seen):
        forge = forge_of(sb)
        forge.remote_url = url
        for site in ("acme", "globex"):
            await forge.install(site)
        forge.start_schedule()
        async with asyncio.timeout(10):
            await three_each.wait()
    installs = [path for path, _, _ in seen[:2]]
    assert installs == ["/forge/lifecycle"] * 2


def test_example_config_sandbox_plays_forge() -> None:
    """config.example.toml's [sandbox.forge] points at serve's port, with both triggers."""
    config = load_config(REPO / "config.example.toml")
    sandbox, serve = sandbox_config(config), serve_config(config)
    assert sandbox is not None and serve is not None
    forge = sandbox.forge
    assert forge.enabled and forge.remote_url.endswith(f":{serve.port}")
    assert forge.app_id == config.environments[serve.environment].app_id
    paths = {r.path for r in serve.routes}
    assert {t.path for t in forge.triggers} <= paths and forge.lifecycle_path in paths


@pytest.mark.parametrize(
    ("forge", "key"),
    [
        ({"triggers": [{"key": "a", "path": "/a", "interval": "month"}]},
         "sandbox.forge.triggers[0].interval"),
        ({"time_scale": 0}, "sandbox.forge.time_scale"),
        ({"colour": "blue"}, "sandbox.forge.colour"),
    ],
)
def test_forge_config_refusals(forge: dict[str, Any], key: str) -> None:
    """A bad [sandbox.forge] key names itself."""
    from runner.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_sandbox_config({"forge": forge})
    assert info.value.key == key
