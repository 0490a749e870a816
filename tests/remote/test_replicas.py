"""serve as replicas on one PostgreSQL: one run per installation and interval whatever the
deliveries, no token in the clear in the database, /healthz and /readyz for the balancer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from runner.config.configfile import Config, load_config
from runner.errors import ConfigError
from runner.journal.postgres import PostgresJournal
from runner.minting.sealed import SealKey
from runner.remote.installation_tokens import Installation
from runner.remote.nightly import journal_identity
from runner.remote.servedb import STALE_S, ServeDatabase
from runner.remote.server import RunningRemote, serve_remote
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import ForgeTrigger, SandboxConfig, SandboxIssue, SandboxSite
from runner.sandbox.forge import ForgePlatform
from runner.sandbox.testing import ACTIVE_PATTERN, StartSandbox
from tests.pgdb import pg_dump
from tests.remote.helpers import ROUTES, forge_of, forge_sandbox_config, write_serve_config
from tests.remote.test_triggers import job_routes, write_template

NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly", interval="day")
KEY_ENV = "FORGE_RUNNER_TEST_SEAL_KEY"
INSTALLATIONS = 20
USERS = 2
DELIVERIES = 5  # the first and Forge's 4 redeliveries, to each replica


def twenty_sites(base: SandboxConfig) -> SandboxConfig:
    sites = {}
    for n in range(INSTALLATIONS):
        cloud = str(uuid.uuid5(uuid.NAMESPACE_URL, f"replica-site-{n}"))
        sites[f"site{n}"] = SandboxSite(
            name=f"site{n}", cloud_id=cloud, active_account_pattern=ACTIVE_PATTERN,
            issues=(SandboxIssue(f"S{n}-1", f"S{n}", "an issue"),), projects=(f"S{n}",))
    return replace(base, sites={**base.sites, **sites})


def replica_config(folder: Path, sb: RunningSandbox, url: str, routes: str) -> Config:
    path = write_serve_config(folder, sb, routes=routes,
                              extra=f'[serve.seal]\nsecret_env = "{KEY_ENV}"\n')
    path.write_text(path.read_text().replace('journal = "journal.db"', f'journal = "{url}"'))
    return load_config(path)


async def deliver(forge: ForgePlatform, url: str, site: str,
                  sent: set[tuple[str, str]]) -> tuple[int, str]:
    """One delivery of the nightly trigger to the replica at ``url``, as Forge sends it; the
    (site, system token) it carried is added to ``sent``."""
    token = forge.system_token()
    sent.add((site, token))
    headers = {"Authorization": f"Bearer {forge.fit(site, NIGHTLY.key)}",
               "x-forge-oauth-system": token}
    async with (aiohttp.ClientSession() as session,
                session.post(url + NIGHTLY.path, json={}, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=5.0)) as resp):
        body = await resp.json()
        return resp.status, str(body.get("run"))


@pytest.mark.slow
async def test_two_replicas_start_one_run_per_installation(
        tmp_path: Path, start_sandbox: StartSandbox, pg_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """20 installations, every trigger delivered to both replicas at once, 5 times (the first
    and 4 redeliveries): every delivery answered 200 within Forge's 5 s, exactly one run per
    installation (counted in the journal and in the sandbox's Jira), each run's tokens read
    from the sealed rows; a pg_dump holds none of the system tokens sent, nor a user token."""
    monkeypatch.setenv(KEY_ENV, SealKey.generate().encoded())
    template = write_template(tmp_path, users=USERS)
    sandbox = twenty_sites(forge_sandbox_config(triggers=(NIGHTLY,)))
    async with start_sandbox(sandbox) as sb:
        sb.world.jira_arrivals = []
        forge = forge_of(sb)
        config = replica_config(tmp_path, sb, pg_url, job_routes(template))
        sites = [f"site{n}" for n in range(INSTALLATIONS)]
        async with AsyncExitStack() as stack:
            replicas: list[RunningRemote] = [
                await stack.enter_async_context(serve_remote(config)) for _ in range(2)]
            sent: set[tuple[str, str]] = set()
            answers = []
            for _ in range(DELIVERIES):
                # A round: every installation's delivery to both replicas at once; the next
                # round is Forge's redelivery (it redelivers after an answer, never before).
                answers += await asyncio.gather(*(
                    deliver(forge, replica.url, site, sent)
                    for replica in replicas for site in sites))
            assert {status for status, _ in answers} == {200}
            decisions = Counter(run for _, run in answers)
            assert decisions["accepted"] == INSTALLATIONS
            assert decisions["accepted"] + decisions["duplicate"] == len(answers)
            # Each replica runs what its inserts won; together they run every installation.
            won = await _won_by_replica(pg_url, replicas)
            outcomes = [await r.desk.wait_for_outcomes(n) for r, n in zip(replicas, won,
                                                                          strict=True)]
        assert sum(won) == INSTALLATIONS
        ended = [o for each in outcomes for o in each]
        assert [(o.exit_code, o.state) for o in ended] == [(0, "finished")] * INSTALLATIONS
        clouds = {sb.config.sites[s].cloud_id for s in sites}
        async with PostgresJournal(pg_url, create=False) as journal:
            runs = Counter(r.job_path for r in await journal.runs(1000))
        assert runs == Counter({journal_identity(template, c): 1 for c in clouds})
        arrivals = Counter(a.cloud_id for a in sb.world.jira_arrivals or [])
        assert arrivals == Counter({c: USERS for c in clouds})
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM sealed_tokens").fetchone()
        # Every token delivered is kept (sealed) once per installation: the dump below has
        # them to leak, if any.
        assert row is not None and row[0] == len(sent)
        dump = pg_dump(pg_url)
        assert not [t for _, t in sent if t.encode() in dump]
        assert sb.world.user_tokens and not [t for t in sb.world.user_tokens if t.encode() in dump]


async def _won_by_replica(url: str, replicas: list[RunningRemote]) -> list[int]:
    with psycopg.connect(url) as conn:
        rows: dict[str, int] = dict(conn.execute(
            "SELECT replica, count(*) FROM serve_triggers GROUP BY replica").fetchall())
    names = [r.servedb.replica if r.servedb else "" for r in replicas]
    return [int(rows.get(name, 0)) for name in names]


async def test_replicas_need_the_seal_key(tmp_path: Path, start_sandbox: StartSandbox,
                                          pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a PostgreSQL journal, serve without [serve.seal] is a ConfigError (exit 2) naming
    it, before anything listens."""
    async with start_sandbox(forge_sandbox_config()) as sb:
        path = write_serve_config(tmp_path, sb)
        path.write_text(path.read_text().replace('journal = "journal.db"',
                                                 f'journal = "{pg_url}"'))
        with pytest.raises(ConfigError, match=r"serve\.seal"):
            async with serve_remote(load_config(path)):
                pass


async def test_readyz_follows_the_database(tmp_path: Path, start_sandbox: StartSandbox,
                                           pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz is 200 throughout; /readyz is 200 with the database and the JWKS, then 503
    with a one-line reason once the database is unreachable (its port closed), and no secret
    in any answer; a delivery then is answered 503, for Forge to deliver it again."""
    key = SealKey.generate().encoded()
    monkeypatch.setenv(KEY_ENV, key)
    server = urlsplit(pg_url)
    async with start_sandbox(forge_sandbox_config()) as sb, \
            _Proxy(server.hostname or "", server.port or 5432) as proxy:
        at = f"@{server.hostname}:{server.port or 5432}/"
        target = pg_url.replace(at, f"@127.0.0.1:{proxy.port}/")
        assert target != pg_url
        config = replica_config(tmp_path, sb, target, ROUTES)
        forge = forge_of(sb)
        async with serve_remote(config) as remote, aiohttp.ClientSession() as session:
            ready = await _get(session, remote.url + "/readyz")
            assert ready == (200, '{"ready": true}')
            await proxy.close()
            down = await _get(session, remote.url + "/readyz")
            assert down[0] == 503 and "database unreachable" in down[1]
            assert "\n" not in down[1] and "postgresql" not in down[1] and key not in down[1]
            assert (await _get(session, remote.url + "/healthz"))[0] == 200
            # A delivery meanwhile: 503 (Forge delivers again), not a 500.
            headers = {"Authorization": f"Bearer {forge.fit('acme', 'refresh')}",
                       "x-forge-oauth-system": forge.system_token()}
            async with session.post(remote.url + "/forge/refresh", json={},
                                    headers=headers) as resp:
                assert (resp.status, await resp.json()) == (
                    503, {"error": "database unreachable"})


async def test_readyz_needs_the_jwks(tmp_path: Path, start_sandbox: StartSandbox) -> None:
    """A JWKS that can't be fetched: /readyz 503 "JWKS not loaded" (SQLite journal: no
    database to ask), /healthz 200."""
    async with start_sandbox(forge_sandbox_config()) as sb:
        config = load_config(write_serve_config(tmp_path, sb))
        config = replace(config, serve_table={**(config.serve_table or {}),
                                              "jwks_url": "http://127.0.0.1:9/jwks.json"})
        async with serve_remote(config) as remote, aiohttp.ClientSession() as session:
            assert await _get(session, remote.url + "/readyz") == (
                503, '{"ready": false, "reason": "JWKS not loaded"}')
            assert (await _get(session, remote.url + "/healthz"))[0] == 200


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


class _Proxy:
    """A TCP proxy on loopback to the machine's PostgreSQL; ``close`` shuts its port and cuts
    every connection through it (the database unreachable, without stopping the server)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> _Proxy:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()
            self._server = None


async def test_accept_rules_in_the_database(pg_url: str) -> None:
    """The database's rules, as two replicas see them: one accept per interval, a delivery in
    the window a duplicate, one after the window while the run goes on 'running', one after it
    ended in the same interval a duplicate; a run whose replica stopped renewing it (died)
    blocks nothing."""
    key = SealKey.generate()
    a, b = await ServeDatabase.open(pg_url, key), await ServeDatabase.open(pg_url, key)
    try:
        inst = Installation("ari:cloud:ecosystem::installation/x", "c", "https://x", "P", "e",
                            0.0)
        await a.see(inst, "", leeway_s=10.0)
        day, minute = 86400.0, 60.0
        first = await a.accept("/n", inst.installation_id, day, minute)
        assert first.decision == "accepted" and first.trigger is not None
        assert (await b.accept("/n", inst.installation_id, day, minute)).decision == "duplicate"
        assert (await b.accept("/n", inst.installation_id, day, 0.0)).decision == "running"
        await a.ended(first.trigger.trigger_id, "finished")
        assert (await b.accept("/n", inst.installation_id, day, 0.0)).decision == "duplicate"
        # Intervals of a millisecond: every delivery is in an interval of its own.
        quick = await b.accept("/q", inst.installation_id, 0.001, 0.0)
        assert quick.decision == "accepted"
        assert (await a.accept("/q", inst.installation_id, 0.001, 0.0)).decision == "running"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE serve_triggers SET alive_at = alive_at - %s", (STALE_S + 1,))
        assert (await a.accept("/q", inst.installation_id, 0.001, 0.0)).decision == "accepted"
    finally:
        await a.close()
        await b.close()
