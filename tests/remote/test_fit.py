"""FIT verification at the remote: every bad token is a 401 that stores nothing; JWKS caching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runner.config.configfile import load_config
from runner.remote.server import RunningRemote, serve_remote
from runner.sandbox.app import RunningSandbox
from runner.sandbox.forge import ForgePlatform
from runner.sandbox.testing import StartSandbox
from tests.remote.helpers import forge_of, forge_sandbox_config, write_serve_config


@dataclass
class Stack:
    sb: RunningSandbox
    forge: ForgePlatform
    remote: RunningRemote
    session: aiohttp.ClientSession

    async def post(self, path: str, fit: str | None, system_token: str | None = None,
                   body: Any = None) -> int:
        headers = {}
        if fit is not None:
            headers["Authorization"] = f"Bearer {fit}"
        if system_token is not None:
            headers["x-forge-oauth-system"] = system_token
        async with self.session.post(self.remote.url + path, json=body or {},
                                     headers=headers) as resp:
            await resp.read()
            return resp.status

    def nothing_stored(self) -> bool:
        return not self.remote.store.installations() and all(
            self.remote.store.token(i) is None for i in self.forge.installed.values()
        )


@pytest.fixture
async def stack(tmp_path: Path, start_sandbox: StartSandbox) -> AsyncIterator[Stack]:
    async with start_sandbox(forge_sandbox_config()) as sb:
        config = load_config(write_serve_config(tmp_path, sb))
        async with serve_remote(config) as remote, aiohttp.ClientSession() as session:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            yield Stack(sb, forge, remote, session)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_valid_fit_keeps_the_installation_and_its_token(stack: Stack) -> None:
    """A FIT signed by Forge's key, for our app, in time: 200, installation and token kept."""
    token = stack.forge.system_token()
    assert await stack.post("/forge/refresh", stack.forge.fit("acme"), token) == 200
    inst = stack.forge.installation_id("acme")
    held = stack.remote.store.token(inst)
    assert held is not None and held.token == token
    (seen,) = stack.remote.store.installations()
    assert seen.cloud_id == stack.sb.config.sites["acme"].cloud_id
    assert seen.api_base_url == stack.sb.jira_base(seen.cloud_id)


async def test_bad_signature_is_refused(stack: Stack) -> None:
    """The same claims signed by another RSA key under Forge's kid: 401, nothing stored."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims_of(stack.forge.fit("acme")), other, algorithm="RS256",
                        headers={"kid": stack.forge.kid})
    assert await stack.post("/forge/refresh", forged, stack.forge.system_token()) == 401
    assert stack.nothing_stored()


async def test_tampered_claims_are_refused(stack: Stack) -> None:
    """A genuine FIT whose payload was swapped (signature no longer matches): 401."""
    header, _, signature = stack.forge.fit("acme").split(".")
    other_payload = stack.forge.fit("globex").split(".")[1]
    tampered = f"{header}.{other_payload}.{signature}"
    assert await stack.post("/forge/refresh", tampered, stack.forge.system_token()) == 401
    assert stack.nothing_stored()


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"}, "wrong aud"),
        ({"iss": "someone-else"}, "wrong iss"),
        # Times are offsets from when the test runs (the suite may reach it many minutes after
        # collecting it), made absolute below.
        ({"exp": -120, "iat": -145}, "expired"),
        ({"nbf": 600}, "not yet valid"),
        ({"iss": None}, "no iss"),
    ],
)
async def test_wrong_claims_are_refused(stack: Stack, claims: dict[str, Any], why: str) -> None:
    """A FIT with a wrong aud or iss, expired or not yet valid: 401, nothing stored."""
    now = int(time.time())
    overrides = {k: now + v if k in ("exp", "iat", "nbf") else v
                 for k, v in claims.items() if v is not None}
    fit = stack.forge.fit("acme", **overrides)
    if claims.get("iss", "") is None:
        body = claims_of(fit)
        del body["iss"]
        fit = jwt.encode(body, stack.forge._key, algorithm="RS256",
                         headers={"kid": stack.forge.kid})
    assert await stack.post("/forge/refresh", fit, stack.forge.system_token()) == 401, why
    assert stack.nothing_stored()


async def test_other_algorithms_are_refused(stack: Stack) -> None:
    """alg none, or HS256 keyed with the public JWK: 401 (the algorithm is the key's)."""
    body = claims_of(stack.forge.fit("acme"))
    unsigned = jwt.encode(body, "", algorithm="none", headers={"kid": stack.forge.kid})
    assert await stack.post("/forge/refresh", unsigned, stack.forge.system_token()) == 401
    secret = str(stack.forge.jwks()["keys"][0]["n"]).encode()
    hs = jwt.encode(body, secret, algorithm="HS256", headers={"kid": stack.forge.kid})
    assert await stack.post("/forge/refresh", hs, stack.forge.system_token()) == 401
    assert await stack.post("/forge/refresh", None, stack.forge.system_token()) == 401
    assert stack.nothing_stored()


async def test_unknown_kid_fetches_the_jwks_once(stack: Stack) -> None:
    """Many requests at once with an unknown kid make one JWKS fetch, and later ones none."""
    good = stack.forge.fit("acme")
    assert await stack.post("/forge/refresh", good) == 200
    assert stack.forge.jwks_fetches == 1  # the first FIT filled the cache
    body = claims_of(good)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode(body, stranger, algorithm="RS256", headers={"kid": "rotated-key-2"})
    statuses: list[int] = []

    async def post() -> None:
        statuses.append(await stack.post("/forge/refresh", unknown))

    async with asyncio.TaskGroup() as tg:
        for _ in range(20):
            tg.create_task(post())
    assert statuses == [401] * 20
    assert stack.forge.jwks_fetches == 2
    for _ in range(5):
        assert await stack.post("/forge/refresh", unknown) == 401
    assert stack.forge.jwks_fetches == 2
    # Known keys keep working from the cache.
    assert await stack.post("/forge/refresh", stack.forge.fit("globex")) == 200
    assert stack.forge.jwks_fetches == 2


async def test_a_rejected_fit_does_not_start_a_job(tmp_path: Path,
                                                   start_sandbox: StartSandbox) -> None:
    """A job route with a bad FIT: 401, no run accepted, no installation seen."""
    job = tmp_path / "nightly.toml"
    job.write_text('name = "n"\nsite = "any"\n[source]\nrows = [{account_id = '
                   '"5ca1ab1e0000000000000001"}]\n[[actions]]\ntype = "user.property.set"\n'
                   'key = "k"\nvalue = {a = "1"}\n')
    routes = f'[[serve.routes]]\npath = "/forge/nightly"\nkind = "job"\njob = "{job}"\n'
    async with start_sandbox(forge_sandbox_config()) as sb:
        config = load_config(write_serve_config(tmp_path, sb, routes=routes))
        async with serve_remote(config) as remote, aiohttp.ClientSession() as session:
            forge = forge_of(sb)
            other_app = "ari:cloud:ecosystem::app/11111111-1111-4111-8111-111111111111"
            fit = forge.fit("acme", aud=other_app)
            async with session.post(remote.url + "/forge/nightly", json={},
                                    headers={"Authorization": f"Bearer {fit}"}) as resp:
                assert resp.status == 401
            assert remote.store.installations() == []
            assert remote.desk.outcomes == []
