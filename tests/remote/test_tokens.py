"""System tokens per installation: latest exp wins, memory only, handed out over loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web

from runner.budgets import ManualClock
from runner.config.configfile import SystemTokenSource, load_config
from runner.errors import ConfigError, SystemTokenError
from runner.events import SystemTokenWaiting
from runner.minting.system_tokens import SystemTokenProvider
from runner.remote.installation_tokens import TokenStore
from runner.remote.loopback import build_token_app
from runner.tokenroute import SECRET_HEADER, SecretRef, token_digest
from tests.fakes import Events

INST = "ari:cloud:ecosystem::installation/3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e"
OTHER = "ari:cloud:ecosystem::installation/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
SECRET = "loopback-secret-0123456789abcdef"


def system_jwt(exp: float, tag: str = "a") -> str:
    return jwt.encode({"exp": int(exp), "tag": tag}, "k" * 32, algorithm="HS256")


def test_latest_exp_wins() -> None:
    """An older token arriving after a newer one (a slow redelivery) does not replace it."""
    store = TokenStore(lambda: 1000.0)
    newer, older = system_jwt(9000, "new"), system_jwt(5000, "old")
    assert store.offer(INST, newer)
    assert not store.offer(INST, older)
    held = store.token(INST)
    assert held is not None and held.token == newer and held.expires_at == 9000
    newest = system_jwt(12000, "newest")
    assert store.offer(INST, newest)
    assert store.token(INST).token == newest  # type: ignore[union-attr]
    assert store.token(OTHER) is None


def test_opaque_token_does_not_displace_a_valid_jwt() -> None:
    """A token without exp replaces a held one only once that has expired."""
    now = [1000.0]
    store = TokenStore(lambda: now[0])
    store.offer(INST, system_jwt(2000))
    assert not store.offer(INST, "opaque-system-token-without-exp")
    now[0] = 2500.0
    assert store.offer(INST, "opaque-system-token-without-exp")


def test_held_token_is_not_in_reprs() -> None:
    """Neither the store's nor a held token's repr shows the token."""
    store = TokenStore(lambda: 0.0)
    token = system_jwt(9000)
    store.offer(INST, token)
    assert token not in repr(store.token(INST)) and token not in repr(store)


@pytest.fixture
async def token_url() -> AsyncIterator[tuple[str, TokenStore]]:
    store = TokenStore(lambda: 1000.0)
    runner = web.AppRunner(build_token_app(store, SECRET), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", store
    finally:
        await runner.cleanup()


async def test_route_wants_the_secret(token_url: tuple[str, TokenStore]) -> None:
    """Without the secret, or with a wrong one: 401 and no token; with it: the token."""
    url, store = token_url
    token = system_jwt(9000)
    store.offer(INST, token)
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {SECRET_HEADER: "wrong"}):
            async with session.get(f"{url}/system-token", params={"installation": INST},
                                   headers=headers) as resp:
                assert resp.status == 401
                assert token not in await resp.text()
        async with session.get(f"{url}/system-token", params={"installation": INST},
                               headers={SECRET_HEADER: SECRET}) as resp:
            assert resp.status == 200
            assert (await resp.json())["token"] == token
        async with session.get(f"{url}/system-token", params={"installation": OTHER},
                               headers={SECRET_HEADER: SECRET}) as resp:
            assert resp.status == 404


async def test_provider_reads_the_serve_process(token_url: tuple[str, TokenStore]) -> None:
    """A run's provider with a serve source waits while serve holds none, then gets the
    freshest token as it arrives."""
    url, store = token_url
    clock = ManualClock(start=1000.0)
    source = SystemTokenSource(serve=url, installation_id=INST,
                               serve_secret_value=SECRET, max_wait_s=3600)
    events = Events()

    def second_wait_brings_a_token() -> None:
        if events.count(SystemTokenWaiting) == 2:
            store.offer(INST, system_jwt(9000))

    events.on_waiting = second_wait_brings_a_token
    provider = SystemTokenProvider(source, "dev", clock=clock, observer=events,
                                   poll_initial_s=1, poll_max_s=1)
    token = await provider.get()
    assert token == store.token(INST).token  # type: ignore[union-attr]
    reasons = [e.reason for e in events.of(SystemTokenWaiting)]
    assert len(reasons) == 2 and "holds no token yet" in reasons[0]


async def test_provider_with_a_wrong_secret_says_so(token_url: tuple[str, TokenStore]) -> None:
    """A wrong shared secret: the wait ends in SystemTokenError naming the refusal."""
    url, store = token_url
    store.offer(INST, system_jwt(9000))
    source = SystemTokenSource(serve=url, installation_id=INST,
                               serve_secret_value="not-the-secret", max_wait_s=0)
    provider = SystemTokenProvider(source, "dev", clock=ManualClock(start=1000.0))
    with pytest.raises(SystemTokenError, match="refused us"):
        await provider.get()


def _config(tmp_path: Path, token_table: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[environments.dev]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
[environments.dev.system_token]
{token_table}
""")
    return path


def test_config_serve_source(tmp_path: Path) -> None:
    """system_token.serve: a loopback URL, the installation and where the secret is."""
    config = load_config(_config(tmp_path, f'serve = "http://127.0.0.1:8781/"\n'
                                 f'installation_id = "{INST}"\nsecret_file = "secret.txt"'))
    source = config.environments["dev"].system_token
    assert source.serve == "http://127.0.0.1:8781"
    assert source.installation_id == INST
    assert source.serve_secret == SecretRef(file=tmp_path / "secret.txt")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (f'serve = "http://10.0.0.5:8781"\ninstallation_id = "{INST}"\nsecret_env = "S"',
         "serve"),
        (f'serve = "https://127.0.0.1:8781"\ninstallation_id = "{INST}"\nsecret_env = "S"',
         "serve"),
        ('serve = "http://127.0.0.1:8781"\nsecret_env = "S"', "installation_id"),
        (f'serve = "http://127.0.0.1:8781"\ninstallation_id = "{INST}"', "secret_env"),
        (f'serve = "http://127.0.0.1:8781"\ninstallation_id = "{INST}"\nsecret = "x"',
         "secret"),
    ],
)
def test_config_serve_source_refusals(tmp_path: Path, table: str, key: str) -> None:
    """Another address than loopback, no installation, no secret, or a secret inline: exit 2
    naming the key."""
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, table))
    assert info.value.key == f"environments.dev.system_token.{key}"


def test_exp_past_four_hours_is_not_believed() -> None:
    """A token whose exp lies past arrival + 4 h + leeway is not kept; one within it is."""
    store = TokenStore(lambda: 1000.0, leeway_s=10.0)
    assert store.offer(INST, system_jwt(1000 + 4 * 3600 + 5, "in-time"))
    assert not store.offer(INST, system_jwt(2**40, "forged"))
    assert not store.offer(INST, system_jwt(1000 + 4 * 3600 + 11, "just-past"))
    assert store.token(INST).token == system_jwt(1000 + 4 * 3600 + 5, "in-time")  # type: ignore[union-attr]


def test_refused_token_is_dropped_for_the_runner_up() -> None:
    """A refused token is no longer handed out, the next freshest is, and it is never kept
    again."""
    store = TokenStore(lambda: 1000.0)
    real, bad = system_jwt(5000, "real"), system_jwt(9000, "bad")
    store.offer(INST, real)
    assert store.offer(INST, bad)
    assert store.refuse(INST, token_digest(bad))
    assert store.token(INST).token == real  # type: ignore[union-attr]
    assert not store.offer(INST, bad)
    assert store.token(INST).token == real  # type: ignore[union-attr]


async def raw_request(url: str, head: bytes, body: bytes = b"") -> int:
    """Send a hand-written HTTP/1.1 request (bytes no client library would send); the status."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_secret_header_that_is_not_utf8_is_a_401(token_url: tuple[str, TokenStore]) -> None:
    """A secret header holding bytes that are not UTF-8: 401 on both routes, not a 500."""
    url, store = token_url
    store.offer(INST, system_jwt(9000))
    secret = SECRET_HEADER.encode() + b": \xff\xfe" + SECRET.encode() + b"\r\n"
    get = f"GET /system-token?installation={INST} HTTP/1.1\r\nHost: x\r\n".encode()
    post = b"POST /system-token/refused HTTP/1.1\r\nHost: x\r\n"
    assert await raw_request(url, get + secret) == 401
    assert await raw_request(url, post + secret, b"{}") == 401


async def test_refusal_route(token_url: tuple[str, TokenStore]) -> None:
    """POST /system-token/refused wants the secret and a digest; it drops the token; a body
    nested past the JSON parser's depth is a 400, not a 500."""
    url, store = token_url
    token = system_jwt(9000)
    store.offer(INST, token)
    good = {"installation": INST, "digest": token_digest(token)}
    async with aiohttp.ClientSession() as session:
        async def post(body: bytes | dict[str, str], secret: str = SECRET) -> int:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            async with session.post(f"{url}/system-token/refused", data=data,
                                    headers={SECRET_HEADER: secret}) as resp:
                return resp.status

        assert await post(good, "wrong") == 401
        assert store.token(INST) is not None
        assert await post(b"[" * 3000 + b"]" * 3000) == 400
        assert await post({"installation": INST, "digest": token}) == 400
        assert await post(good) == 204
        assert store.token(INST) is None


async def test_provider_reports_a_refused_token(token_url: tuple[str, TokenStore]) -> None:
    """A serve source's token the gateway refused: the provider tells serve before asking
    again, and gets the runner-up serve holds."""
    url, store = token_url
    real, bad = system_jwt(5000, "real"), system_jwt(9000, "bad")
    store.offer(INST, real)
    store.offer(INST, bad)
    source = SystemTokenSource(serve=url, installation_id=INST,
                               serve_secret_value=SECRET, max_wait_s=0)
    provider = SystemTokenProvider(source, "dev", clock=ManualClock(start=1000.0))
    assert await provider.get() == bad
    provider.invalidate(bad)
    assert await provider.get() == real
    assert store.token(INST).token == real  # type: ignore[union-attr]
