"""System tokens sealed in PostgreSQL: AES-GCM bound to the installation, the freshest handed
out, refused and expired ones never, another key refused in one line; the sealed source."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import psycopg
import pytest

from runner.config.configfile import load_config
from runner.config.tokensource import SystemTokenSource
from runner.errors import ConfigError, SealKeyError
from runner.minting.sealed import SealKey
from runner.minting.system_tokens import BrokenSourceError, SystemTokenProvider
from runner.remote.installation_tokens import Installation
from runner.remote.servedb import ServeDatabase
from runner.tokenroute import SecretRef

INST = "ari:cloud:ecosystem::installation/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
OTHER = "ari:cloud:ecosystem::installation/11111111-2222-4333-8444-555555555555"
KEY_ENV = "FORGE_RUNNER_TEST_SEAL_KEY"
CLOUD = "0f1e2d3c-4b5a-4697-8877-665544332211"


def token(exp_in_s: float | None, n: int = 0) -> str:
    claims: dict[str, object] = {"sub": f"system-{n}"}
    if exp_in_s is not None:
        claims["exp"] = int(time.time() + exp_in_s)
    return jwt.encode(claims, "not-a-real-secret-of-32-bytes-at-least", algorithm="HS256")


async def keep(db: ServeDatabase, inst: str, tok: str) -> bool:
    return await db.see(Installation(inst, CLOUD, f"https://api.example/{CLOUD}", "PRODUCTION",
                                     "env-1", 0.0), tok, leeway_s=10.0)


def source(url: str, inst: str = INST) -> SystemTokenSource:
    return SystemTokenSource(sealed=url, installation_id=inst, seal_key=SecretRef(env=KEY_ENV),
                             max_wait_s=0.0)


def test_key_must_be_32_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing or malformed key is one SealKeyError line naming where it was read, not the
    key; base64 and hex both load."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SealKeyError, match=f"no seal key in environment variable {KEY_ENV}"):
        SealKey.load(SecretRef(env=KEY_ENV))
    monkeypatch.setenv(KEY_ENV, "short-and-not-a-key")
    with pytest.raises(SealKeyError, match="not 32 bytes") as caught:
        SealKey.load(SecretRef(env=KEY_ENV))
    assert "short-and-not-a-key" not in str(caught.value)
    key = SealKey.generate()
    monkeypatch.setenv(KEY_ENV, key.encoded())
    assert SealKey.load(SecretRef(env=KEY_ENV)).key == key.key
    monkeypatch.setenv(KEY_ENV, key.key.hex())
    assert SealKey.load(SecretRef(env=KEY_ENV)).key == key.key
    assert key.encoded() not in repr(key)


def test_seal_binds_the_installation() -> None:
    """A sealed token opens for its installation only: moved to another row it fails."""
    key = SealKey.generate()
    nonce, ciphertext = key.seal(INST, "tok-123")
    assert key.unseal(INST, nonce, ciphertext) == "tok-123"
    assert b"tok-123" not in ciphertext
    with pytest.raises(SealKeyError):
        key.unseal(OTHER, nonce, ciphertext)


async def test_freshest_unexpired_unrefused(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed source hands out the latest exp; a refused token is dropped for every reader
    and never kept again; an expired one and one claiming more than 4 h are never handed out."""
    key = SealKey.generate()
    monkeypatch.setenv(KEY_ENV, key.encoded())
    db = await ServeDatabase.open(pg_url, key)
    try:
        old, new, late = token(1800, 1), token(3600, 2), token(5 * 3600, 3)
        assert await keep(db, INST, old) and await keep(db, INST, new)
        assert not await keep(db, INST, late)  # exp beyond Forge's 4 h: not believed
        assert not await keep(db, INST, new)  # the same token again: one row
        assert await keep(db, INST, token(-10, 4))  # kept, never handed out
        provider = SystemTokenProvider(source(pg_url), "dev")
        assert await provider.get() == new
        provider.invalidate(new)  # the gateway refused it
        assert await provider.get() == old
        assert await SystemTokenProvider(source(pg_url), "dev").get() == old
        assert not await keep(db, INST, new)  # delivered again: still refused
        assert await SystemTokenProvider(source(pg_url), "dev").get() == old
    finally:
        await db.close()
    dump = _dump(pg_url)
    for tok in (old, new, late):
        assert tok.encode() not in dump


async def test_wrong_key_is_refused(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica started with another key fails at start (SealKeyError, exit 2); a run's
    sealed source with another key is a broken source (it can't heal by waiting)."""
    db = await ServeDatabase.open(pg_url, SealKey.generate())
    await keep(db, INST, token(3600))
    await db.close()
    with pytest.raises(SealKeyError, match="does not open the system tokens"):
        await ServeDatabase.open(pg_url, SealKey.generate())
    monkeypatch.setenv(KEY_ENV, SealKey.generate().encoded())
    with pytest.raises(BrokenSourceError, match="does not open the system tokens"):
        await SystemTokenProvider(source(pg_url), "dev").get()


def test_sealed_source_needs_a_postgres_journal(tmp_path: Path) -> None:
    """``sealed = true`` takes the journal's URL; on a SQLite journal it is a ConfigError."""
    body = f"""
[environments.dev]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
[environments.dev.system_token]
sealed = true
installation_id = "{INST}"
secret_env = "{KEY_ENV}"
"""
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=r"environments\.dev\.system_token\.sealed"):
        load_config(path)
    path.write_text('[runner]\njournal = "postgresql://u:pw@127.0.0.1/db"\n' + body)
    src = load_config(path).environments["dev"].system_token
    assert src.sealed == "postgresql://u:pw@127.0.0.1/db" and src.installation_id == INST
    assert src.seal_key == SecretRef(env=KEY_ENV) and "pw" not in repr(src)


def _dump(url: str) -> bytes:
    from tests.pgdb import pg_dump

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM sealed_tokens").fetchone()
    assert rows is not None and rows[0] == 3  # the tokens are there, sealed
    return pg_dump(url)
