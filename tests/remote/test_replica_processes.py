"""Two ``forge-runner serve`` processes as replicas on one PostgreSQL, as a load balancer
would have them: one run per installation per interval, no token in the clear in a pg_dump."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from runner.journal.postgres import PostgresJournal
from runner.minting.sealed import SealKey
from runner.remote.nightly import journal_identity
from runner.sandbox.testing import StartSandbox
from tests.pgdb import pg_dump
from tests.remote.helpers import forge_of, forge_sandbox_config
from tests.remote.test_replicas import (
    DELIVERIES,
    INSTALLATIONS,
    KEY_ENV,
    NIGHTLY,
    USERS,
    deliver,
    replica_config,
    twenty_sites,
)
from tests.remote.test_triggers import job_routes, write_template

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class Replica:
    """A serve process; its log lines read as they come (the pipe never fills)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url = ""
        self._listening = asyncio.Event()
        self.finished: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, config: Path, env: dict[str, str]) -> Replica:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "serve", "--config", str(config), "--port", "0",
            "--token-port", "0", "--log-format", "json", stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        replica = cls(process)
        async with asyncio.timeout(60):
            await replica._listening.wait()
        return replica

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if match := LISTENING.search(line):
                self.url = match.group(1)
                self._listening.set()
            if "remote.run.finished" in line:
                self.finished[json.loads(line).get("state", "?")] += 1
                self.changed.set()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await self.process.wait()
        await self._reader
        return code


@pytest.mark.slow
async def test_two_serve_processes_start_one_run_per_installation(
        tmp_path: Path, start_sandbox: StartSandbox, pg_url: str) -> None:
    """Two serve processes on one PostgreSQL, 20 installations, every trigger delivered to both
    at once and redelivered 4 times: all answered 200, exactly 20 accepted, one run per
    installation (journal and sandbox Jira), both exit 0 on SIGTERM; a pg_dump holds none of
    the system tokens sent nor a user token; a third process with another key exits 2 in one
    line."""
    key = SealKey.generate().encoded()
    env = {**os.environ, KEY_ENV: key}
    template = write_template(tmp_path, users=USERS)
    async with start_sandbox(twenty_sites(forge_sandbox_config(triggers=(NIGHTLY,)))) as sb:
        sb.world.jira_arrivals = []
        forge = forge_of(sb)
        config = replica_config(tmp_path, sb, pg_url, job_routes(template)).path
        replicas = [await Replica.start(config, env) for _ in range(2)]
        try:
            sites = [f"site{n}" for n in range(INSTALLATIONS)]
            sent: set[tuple[str, str]] = set()
            answers = []
            for _ in range(DELIVERIES):
                answers += await asyncio.gather(*(
                    deliver(forge, r.url, site, sent) for r in replicas for site in sites))
            assert {status for status, _ in answers} == {200}
            decisions = Counter(run for _, run in answers)
            assert decisions == Counter(accepted=INSTALLATIONS,
                                        duplicate=len(answers) - INSTALLATIONS)
            async with asyncio.timeout(120):
                while sum(sum(r.finished.values()) for r in replicas) < INSTALLATIONS:
                    waits = [asyncio.ensure_future(r.changed.wait()) for r in replicas]
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for r, w in zip(replicas, waits, strict=True):
                        w.cancel()
                        r.changed.clear()
        finally:
            codes = [await r.stop() for r in replicas]
        assert codes == [0, 0], "".join(replicas[0].lines[-20:] + replicas[1].lines[-20:])
        finished = sum((r.finished for r in replicas), Counter())
        assert finished == Counter(finished=INSTALLATIONS)
        clouds = {sb.config.sites[s].cloud_id for s in sites}
        async with PostgresJournal(pg_url, create=False) as journal:
            runs = Counter(r.job_path for r in await journal.runs(1000))
        assert runs == Counter({journal_identity(template, c): 1 for c in clouds})
        arrivals = Counter(a.cloud_id for a in sb.world.jira_arrivals or [])
        assert arrivals == Counter({c: USERS for c in clouds})
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM sealed_tokens").fetchone()
        assert row is not None and row[0] == len(sent)
        dump = pg_dump(pg_url)
        assert not [t for _, t in sent if t.encode() in dump]
        assert sb.world.user_tokens and not [t for t in sb.world.user_tokens if t.encode() in dump]
        logs = "".join(line for r in replicas for line in r.lines)
        assert key not in logs and not [t for _, t in sent if t in logs]

        other = {**os.environ, KEY_ENV: SealKey.generate().encoded()}
        third = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "serve", "--config", str(config), "--port", "0",
            "--token-port", "0", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=other)
        async with asyncio.timeout(60):
            _, raw = await third.communicate()
        stderr = raw.decode()
        assert third.returncode == 2
        assert "does not open the system tokens in the database" in stderr
        assert len(stderr.strip().splitlines()) == 1 and other[KEY_ENV] not in stderr
