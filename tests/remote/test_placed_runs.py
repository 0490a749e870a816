"""A run serve started on a PostgreSQL journal is open to every worker: rebuilt from its
placement (the installation's site) and the sealed tokens, and finished by a worker when the
replica that started it is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from runner.cluster.placed import Placement, placed_run
from runner.config.configfile import SiteConfig, load_config
from runner.errors import JobError
from runner.minting.sealed import SealKey
from runner.sandbox.config import Faults
from runner.sandbox.testing import StartSandbox, pattern_account
from tests.remote.helpers import after_jira_arrivals, forge_of, forge_sandbox_config
from tests.remote.test_replica_processes import Replica
from tests.remote.test_replicas import KEY_ENV, NIGHTLY, deliver, replica_config, twenty_sites
from tests.remote.test_triggers import job_routes, write_template

USERS = 30
CLOUD = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
SITE = SiteConfig(name=CLOUD, cloud_id=CLOUD, installation_id="inst-1", environment="dev",
                  api_base_url=f"https://api.invalid/ex/jira/{CLOUD}",
                  context_ari=f"ari:cloud:jira::site/{CLOUD}")


async def test_a_placement_rebuilds_the_template_run_on_its_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_sandbox: StartSandbox) -> None:
    """A worker rebuilds serve's run from the placement: the template's job on the
    installation's site (in no config file), the environment's token read sealed from the
    journal's database for that installation; without the seal key it says what is missing
    (serve.seal) instead."""
    template = write_template(tmp_path, users=3)
    url = "postgresql://postgres@127.0.0.1:5432/none"
    async with start_sandbox(forge_sandbox_config(triggers=(NIGHTLY,))) as sb:
        path = replica_config(tmp_path, sb, url, job_routes(template)).path
    config = load_config(path)
    placement = Placement.loads(Placement(SITE).dumps())
    assert placement == Placement(SITE)
    columns = ("account_id", "team")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(JobError, match=r"serve\.seal"):
        placed_run(config, placement, template.read_text(), template, columns, url)

    monkeypatch.setenv(KEY_ENV, SealKey.generate().encoded())
    job, run_config = placed_run(config, placement, template.read_text(), template, columns,
                                 url)
    assert job.sites == (CLOUD,) and job.name == f"nightly@{CLOUD}"
    assert run_config.sites[CLOUD] == SITE
    source = run_config.environments["dev"].system_token
    assert source.sealed == url and source.installation_id == "inst-1"
    assert url not in repr(source)


@pytest.mark.slow
async def test_a_worker_finishes_the_run_of_a_replica_that_died(
        tmp_path: Path, start_sandbox: StartSandbox, pg_url: str) -> None:
    """A serve replica on PostgreSQL accepts a nightly trigger and starts its run, then is
    SIGKILLed mid-run; a `forge-runner worker` on the same journal and config takes the run's
    lanes and finishes it: every user's property is set with its row's value, the run is
    finished with every item done, and no item done before the kill was sent again."""
    key = SealKey.generate().encoded()
    env = {**os.environ, KEY_ENV: key}
    template = write_template(tmp_path, users=USERS)
    sandbox = replace(forge_sandbox_config(triggers=(NIGHTLY,)),
                      faults=Faults(latency_ms_min=60, latency_ms_max=80))
    async with start_sandbox(sandbox) as sb:
        some_sent = after_jira_arrivals(sb, 5)
        config = replica_config(tmp_path, sb, pg_url, job_routes(template)).path
        text = config.read_text().replace("concurrency = 4", "concurrency = 1")
        config.write_text(text + "\n[cluster]\npoll_s = 0.2\n")
        replica = await Replica.start(config, env)
        sent: set[tuple[str, str]] = set()
        assert await deliver(forge_of(sb), replica.url, "globex", sent) == (200, "accepted")
        async with asyncio.timeout(60):
            await some_sent.wait()
        replica.process.send_signal(signal.SIGKILL)
        await replica.stop()
        with psycopg.connect(pg_url) as conn:
            done_before = {str(a) for (a,) in conn.execute(
                "SELECT account_id FROM items WHERE state = 'done'").fetchall()}
        assert 0 < len(done_before) < USERS

        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "worker", "--config", str(config),
            "--log-format", "json", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env)
        finished = asyncio.Event()
        lines: list[str] = []

        async def read() -> None:
            assert worker.stdout is not None
            async for raw in worker.stdout:
                lines.append(raw.decode(errors="replace"))
                if "runner.worker.run_finished" in lines[-1]:
                    finished.set()

        reader = asyncio.ensure_future(read())
        try:
            async with asyncio.timeout(90):
                await finished.wait()
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
            await reader
        log = "".join(lines)
        assert worker.returncode == 0, log[-3000:]
        assert "run_skipped" not in log

        with psycopg.connect(pg_url) as conn:
            states = Counter(s for (s,) in conn.execute("SELECT state FROM items").fetchall())
            placed = conn.execute("SELECT placed FROM runs").fetchone()
        assert states == Counter(done=USERS)
        assert placed is not None and '"installation_id"' in placed[0]
        assert key not in placed[0]
        arrivals = sb.world.jira_arrivals or []
        senders = {a.sender for a in arrivals}
        assert len(senders) == 2, senders  # the replica's requests, then the worker's
        props = sb.world.parts["jira"].site(sb.config.sites["globex"].cloud_id).user_properties
        assert props == {pattern_account(n): {"nightly-sync": {"team": f"t{n}"}}
                         for n in range(1, USERS + 1)}
        # Nothing done before the kill went out again (an item cut short may have).
        by_account = Counter(a.account for a in arrivals)
        assert {a: by_account[a] for a in done_before} == dict.fromkeys(done_before, 1)


@pytest.mark.slow
async def test_a_run_waiting_for_the_replica_is_open_to_workers_at_once(
        tmp_path: Path, start_sandbox: StartSandbox, pg_url: str) -> None:
    """Two installations triggered on one replica that works on one run at a time: the second
    run is loaded when it is accepted, so a `forge-runner worker` starts on it while the first
    is still going (its first write comes before the first run's last), and both finish."""
    env = {**os.environ, KEY_ENV: SealKey.generate().encoded()}
    template = write_template(tmp_path, users=USERS)
    sandbox = replace(twenty_sites(forge_sandbox_config(triggers=(NIGHTLY,))),
                      faults=Faults(latency_ms_min=60, latency_ms_max=80))
    async with start_sandbox(sandbox) as sb:
        sb.world.jira_arrivals = []
        config = replica_config(tmp_path, sb, pg_url, job_routes(template)).path
        text = config.read_text().replace("concurrency = 4", "concurrency = 1")
        config.write_text(text + "\n[cluster]\npoll_s = 0.2\n")
        replica = await Replica.start(config, env)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "worker", "--config", str(config),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env)
        try:
            sent: set[tuple[str, str]] = set()
            for site in ("site0", "site1"):
                assert await deliver(forge_of(sb), replica.url, site, sent) == (200, "accepted")
            async with asyncio.timeout(120):
                while sum(replica.finished.values()) < 2:
                    await replica.changed.wait()
                    replica.changed.clear()
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
            assert await replica.stop() == 0
        assert replica.finished == Counter(finished=2)
        clouds = {site: sb.config.sites[site].cloud_id for site in ("site0", "site1")}
        arrivals = sb.world.jira_arrivals or []
        by_site = {site: [a.at for a in arrivals if a.cloud_id == cloud]
                   for site, cloud in clouds.items()}
        assert all(len(times) == USERS for times in by_site.values()), by_site
        first, second = sorted(by_site.values(), key=min)
        assert min(second) < max(first)
