"""Several `forge-runner worker` processes on one run, and what the fault tests read of them.

``Cluster`` holds a served sandbox (in the test's process, logging every arrival), a PostgreSQL
journal of the test's own and a config for both, with budgets tight enough to bind. It starts
a run (``run --detach``), workers (``worker``, some inside a ``Host`` with their own config,
whose URLs go through the host's proxies), knows each worker's ID (the ``workers`` table, by
pid: the ID every request of that process carries in its User-Agent) and watches the ``lanes``
table while the test runs: every fence claimed, with when it was first seen (``claims``, for the
checker's stale writes), and how long a worker's lanes took to be taken over.

The journal is read here with plain SQL (``tests.cluster.history``), never through the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import JiraLimits, MintLimit, SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, INSTALLATION_A
from tests.cluster.checker import Claim, Expected, Limit, Limits
from tests.cluster.history import Lane, read_lanes
from tests.cluster.hosts import Host
from tests.e2e.harness import APP_ID, Process, _child_env, account, bulk_sandbox_config, write_csv

# How often the lanes are looked at: the resolution of takeover times and of claims' times.
POLL_S = 0.2
# A worker process that has not registered in this long is stuck.
START_LIMIT_S = 60.0


@dataclass(frozen=True)
class Budgets:
    """The app's budgets, the same in the sandbox (which enforces them) and in the config (by
    which the workers pace); Jira's burst and per-issue limits stay at their defaults."""

    mints: int
    mint_window_s: float
    quota: int
    quota_window_s: float

    def limits(self) -> Limits:
        """What the checker holds every window to: the sandbox's own rules (a sliding mint
        log, quota windows aligned to the epoch, per-issue sliding 2 s and 30 s). A burst
        bucket of R a second, full at the start of a second, admits at most 2R in it."""
        jira = JiraLimits()
        return Limits(mints=Limit(self.mints, self.mint_window_s),
                      quota=Limit(self.quota, self.quota_window_s, aligned=True),
                      burst=Limit(2 * min(jira.burst_get_post, jira.burst_put_delete), 1.0),
                      per_issue=(Limit(jira.per_issue_2s, 2.0), Limit(jira.per_issue_30s, 30.0)))


def sandbox_config(issues: int, budgets: Budgets) -> SandboxConfig:
    return replace(
        bulk_sandbox_config(issues), record_arrivals=True,
        mint_limit=MintLimit(limit=budgets.mints, window_s=budgets.mint_window_s),
        jira_limits=JiraLimits(quota_points=budgets.quota, quota_window_s=budgets.quota_window_s))


def via(url: str, address: str) -> str:
    """``url`` with its host and port replaced by ``address`` (``host:port``)."""
    parts = urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{user}{at}{address}", parts.path, parts.query, ""))


def config_text(*, sandbox_url: str, journal: str, token_file: Path, budgets: Budgets,
                lease_s: float, request_timeout_s: float, concurrency: int) -> str:
    return f"""\
[runner]
concurrency = {concurrency}
journal = "{journal}"
request_timeout_s = {request_timeout_s}

[cluster]
lease_s = {lease_s}
poll_s = {POLL_S}

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sandbox_url}/graphql"
mint_limit = {budgets.mints}
mint_window_s = {budgets.mint_window_s}

[environments.dev.system_token]
file = "{token_file}"
max_wait_s = 5.0

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{sandbox_url}/ex/jira/{CLOUD_A}"
installation_id = "{INSTALLATION_A}"
environment = "dev"

[retry.jira]
attempts = 3
wait_initial_s = 0.05
wait_max_s = 0.5
wait_jitter_s = 0.05
deadline_s = 600.0

[jira_budgets]
quota_points = {budgets.quota}
quota_window_s = {budgets.quota_window_s}
"""


def write_job(folder: Path, name: str, users: int, rows_per_user: int, issues: int
              ) -> tuple[Path, list[Expected]]:
    """``users`` x ``rows_per_user`` rows, one comment each (a create: its marker names the
    item), user n's rows ``users`` apart in the source; the items in the job's order."""
    rows = [{"legacy_id": f"L{n:06d}", "account_id": account(n % users),
             "issue": f"MIG-{n % issues + 1}"} for n in range(users * rows_per_user)]
    write_csv(folder / f"{name}.csv", rows)
    job = folder / f"{name}.toml"
    job.write_text(f'name = "{name}"\nsite = "acme"\nrow_key = "legacy_id"\n'
                   f'[source]\ncsv = "{name}.csv"\n\n[[actions]]\ntype = "comment.add"\n'
                   'issue = "{issue}"\nbody = "Migrated {legacy_id}"\n')
    return job, [Expected(f"{r['legacy_id']}#0", r["account_id"]) for r in rows]


@dataclass
class Worker:
    process: Process
    id: str
    host: Host | None = None


@dataclass
class Cluster:
    folder: Path
    sandbox: RunningSandbox
    pg_url: str
    budgets: Budgets
    lease_s: float
    request_timeout_s: float
    concurrency: int = 8
    workers: list[Worker] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    _seen: set[tuple[str, str, int]] = field(default_factory=set)
    _watch: asyncio.Task[None] | None = None
    spawned: int = 0

    def __post_init__(self) -> None:
        self.token_file = self.folder / "system-token"
        self.token_file.write_text(issue_system_token(self.sandbox.config, "dev") + "\n")
        self.config = self.write_config("forge-runner.toml", self.sandbox.url, self.pg_url)

    def write_config(self, name: str, sandbox_url: str, journal: str) -> Path:
        path = self.folder / name
        path.write_text(config_text(
            sandbox_url=sandbox_url, journal=journal, token_file=self.token_file,
            budgets=self.budgets, lease_s=self.lease_s,
            request_timeout_s=self.request_timeout_s, concurrency=self.concurrency))
        return path

    async def spawn(self, *args: str | Path, config: Path | None = None,
                    host: Host | None = None) -> Process:
        """``forge-runner ARGS --config CONFIG`` in its own process group (inside ``host``'s
        namespace if given), its output in files of the folder."""
        self.spawned += 1
        out = self.folder / f"process-{self.spawned}.out"
        err = self.folder / f"process-{self.spawned}.err"
        argv = [sys.executable, "-m", "runner", *map(str, args),
                "--config", str(config or self.config)]
        if host is not None:
            argv = host.command(*argv)  # `ip netns exec` execs: the pid is the runner's
        with out.open("wb") as out_f, err.open("wb") as err_f:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                cwd=self.folder, env=_child_env(), start_new_session=True)
        return Process(proc, out, err)

    async def start_run(self, job: Path) -> str:
        """``run JOB --detach``: the run is loaded and left to the workers; its ID."""
        done = await (await self.spawn("run", job, "--detach", "--log-format", "plain")).wait()
        assert done.code == 0, done.text
        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute("SELECT run_id FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        assert row is not None, done.text
        return str(row[0])

    async def worker(self, *, host: Host | None = None, config: Path | None = None) -> Worker:
        """A `worker` process, once it has registered (so its ID is known)."""
        process = await self.spawn("worker", "--log-format", "plain", config=config, host=host)
        deadline = time.monotonic() + START_LIMIT_S
        while (found := await asyncio.to_thread(self._worker_id, process.pid)) is None:
            if process.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{process.err_path.read_text()}")
            await asyncio.sleep(POLL_S)
        worker = Worker(process, found, host)
        self.workers.append(worker)
        return worker

    def _worker_id(self, pid: int) -> str | None:
        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute("SELECT id FROM workers WHERE pid = %s ORDER BY heartbeat_at DESC "
                               "LIMIT 1", (pid,)).fetchone()
        return None if row is None else str(row[0])

    # -- watching the lanes -------------------------------------------------------------------

    def lanes(self, run_id: str) -> list[Lane]:
        return read_lanes(self.pg_url, run_id)

    def held_by(self, run_id: str, worker: Worker) -> list[Lane]:
        return [lane for lane in self.lanes(run_id)
                if lane.owner == worker.id and lane.state == "held"]

    def lease_end(self, lanes: Sequence[Lane]) -> float:
        """When the last of ``lanes``' leases ends (POSIX time, the database's clock)."""
        ends = [lane.lease_until.timestamp() for lane in lanes if lane.lease_until is not None]
        assert ends, "no lease to end"
        return max(ends)

    def watch(self, run_id: str) -> None:
        """Record every fence claimed in the run, with when it was first seen."""
        self._watch = asyncio.create_task(self._watching(run_id))

    async def _watching(self, run_id: str) -> None:
        while True:
            now = time.time()
            try:
                lanes = await asyncio.to_thread(self.lanes, run_id)
            except psycopg.OperationalError:  # the server restarting: look again soon
                await asyncio.sleep(POLL_S)
                continue
            for lane in lanes:
                key = (lane.run_id, lane.account_id, lane.fence)
                if lane.fence > 0 and key not in self._seen:
                    self._seen.add(key)
                    self.claims.append(Claim(lane.run_id, lane.account_id, lane.fence, now))
            await asyncio.sleep(POLL_S)

    async def taken_over(self, lanes: Sequence[Lane], limit_s: float) -> float:
        """Wait until every one of ``lanes`` is held under a higher fence or done; when
        (POSIX time) the last of them was."""
        deadline = time.monotonic() + limit_s
        waiting = {(lane.run_id, lane.account_id): lane.fence for lane in lanes}
        while True:
            now = time.time()
            for lane in await asyncio.to_thread(self.lanes, lanes[0].run_id):
                old = waiting.get((lane.run_id, lane.account_id))
                if old is not None and (lane.fence > old or lane.state == "done"):
                    del waiting[(lane.run_id, lane.account_id)]
            if not waiting:
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(waiting)} lanes not taken over in {limit_s} s; "
                                     f"the database's sessions: {self.sessions()}")
            await asyncio.sleep(POLL_S)

    async def finished(self, run_id: str, limit_s: float) -> None:
        """Wait until the run is finished (every lane done)."""
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if await asyncio.to_thread(self._run_state, run_id) == "finished":
                    return
            except psycopg.OperationalError:  # the server restarting: look again soon
                pass
            if time.monotonic() > deadline:
                left = [lane for lane in self.lanes(run_id) if lane.state != "done"]
                raise AssertionError(f"run {run_id} not finished in {limit_s} s: "
                                     f"{len(left)} lanes left, e.g. {left[:3]}")
            await asyncio.sleep(POLL_S * 5)

    def abort_idle_transactions(self, seconds: float) -> None:
        """Have the server end any session of the journal's database that sits in an open
        transaction for ``seconds`` (``idle_in_transaction_session_timeout``, for sessions
        opened from now on): a client cut off mid-transaction then stops holding its locks."""
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            name = conn.execute("SELECT current_database()").fetchone()
            assert name is not None
            conn.execute(sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout "
                                 "= {}").format(sql.Identifier(str(name[0])),
                                                sql.Literal(f"{int(seconds * 1000)}ms")))

    def sessions(self) -> list[tuple[str, str, str]]:
        """(client address, state, query) of the journal database's other sessions: a
        partitioned client's open transaction shows here as ``idle in transaction``."""
        with psycopg.connect(self.pg_url) as conn:
            rows = conn.execute(
                "SELECT coalesce(host(client_addr), 'local'), coalesce(state, ''), "
                "left(query, 120) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() ORDER BY state").fetchall()
        return [(str(a), str(s), str(q)) for a, s, q in rows]

    def _run_state(self, run_id: str) -> str | None:
        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute("SELECT state FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    async def stop(self) -> None:
        """Drain every worker still running (SIGTERM), and stop watching."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for worker in self.workers:
            worker.process.signal(signal.SIGCONT)  # a stopped one must run to drain
            worker.process.signal(signal.SIGTERM)
        for worker in self.workers:
            await worker.process.wait()
