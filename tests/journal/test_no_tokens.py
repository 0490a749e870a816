"""No token ever reaches the journal's files (SQLite) or database (PostgreSQL, read through
``pg_dump``), whatever reasons and results the runner passes."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path

import jwt

from runner.journal import ItemRef, Journal, PostgresJournal, SqliteJournal
from runner.logs.redact import register_secret
from tests.pgdb import pg_dump


def _system_token() -> str:
    # Shaped like the sandbox's system tokens: an HS256 JWT with exp.
    return jwt.encode({"sub": "dev", "exp": 4102444800}, secrets.token_hex(16), algorithm="HS256")


def _files_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def _write_tokens_everywhere(journal: Journal, tmp_path: Path) -> tuple[str, ...]:
    """Items written with errors and results built from real-looking responses that carry a
    minted user token (registered, as minting does), an unregistered bearer token and a system
    JWT; returns the three."""
    minted = secrets.token_urlsafe(32)  # the sandbox's user tokens look like this
    register_secret(minted)
    stray = secrets.token_urlsafe(32)  # never registered: caught by its surroundings
    system = _system_token()
    header_dump = f"Authorization: Bearer {stray}"
    gateway_body = json.dumps({
        "data": {"offlineUserAuthToken": {"success": True,
                                          "authToken": {"token": minted, "ttl": 3600}}},
        "extensions": {"gateway": {"request_id": "req-1", "trace_id": "trace-1"}},
    })
    run = (await journal.open_run("migration", str(tmp_path / "job.toml"), "j", "c",
                                  "name = 'migration'\n")).run_id
    cases = [
        ItemRef(f"row-{n}", 0, "acme", "5ca1ab1e0000000000000001", "comment.add")
        for n in range(6)
    ]
    for ref in cases:
        await journal.mark_started(run, ref)
    await journal.mark_failed(run, cases[0], f"HTTP 401 for token {minted}",
                              detail=f"request headers: {header_dump}")
    await journal.mark_uncertain(run, cases[1], "timeout", detail=f"x-forge-oauth-system: "
                                 f"{system}; gateway said {gateway_body}")
    await journal.mark_done(run, cases[2], {"id": "10001", "token": stray,
                                            "self": f"https://x/?access_token={stray}"})
    await journal.mark_done(run, cases[3], {"id": "10002", "echo": gateway_body,
                                            "nested": [{"authorization": f"Bearer {stray}"}]})
    await journal.mark_skipped(run, cases[4], f"refused {system}")
    await journal.mark_blocked(run, cases[5], "could not load permissions",
                               detail=f"minted {minted} then sent it (Bearer {stray})")
    got = await journal.states(run, [ref.row_key for ref in cases])
    assert got["row-2#0"].result is not None and got["row-2#0"].result["id"] == "10001"
    assert got["row-0#0"].reason is not None and "HTTP 401" in got["row-0#0"].reason
    return minted, stray, system


def _assert_none_in(snapshot: dict[str, bytes], tokens: tuple[str, ...]) -> None:
    assert any(b"10001" in data for data in snapshot.values())  # the grep can find things
    for name, data in snapshot.items():
        for secret in tokens:
            for form in (secret, base64.b64encode(secret.encode()).decode()):
                assert form.encode() not in data, f"a token is in {name}"


async def test_no_token_in_the_database_or_its_wal(tmp_path: Path) -> None:
    """The tokens in items' errors and results (a registered minted token, an unregistered
    bearer token, a system JWT) are in none of the database file, its WAL or the lock files."""
    folder = tmp_path / "journal"
    async with SqliteJournal(folder / "forge-runner.db") as journal:
        tokens = await _write_tokens_everywhere(journal, tmp_path)
        # While open, the latest writes are in the WAL; look there too.
        while_open = await asyncio.to_thread(_files_bytes, folder)
    after_close = await asyncio.to_thread(_files_bytes, folder)
    assert any(name.endswith("-wal") for name in while_open)
    for snapshot in (while_open, after_close):
        _assert_none_in(snapshot, tokens)


async def test_no_token_in_a_pg_dump_of_the_database(pg_url: str, tmp_path: Path) -> None:
    """The same writes on PostgreSQL leave none of the tokens in a ``pg_dump`` of the
    journal's database."""
    async with PostgresJournal(pg_url) as journal:
        tokens = await _write_tokens_everywhere(journal, tmp_path)
    dump = await asyncio.to_thread(pg_dump, pg_url)
    _assert_none_in({"pg_dump": dump}, tokens)
