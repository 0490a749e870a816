"""Worker processes sharing one run on the PostgreSQL journal: 1 worker against 3.

    .venv/bin/python bench/cluster.py [--pg URL] [--quota-users 72] [--quota-rows-per-user 5]
                                      [--users 200] [--rows-per-user 10] [--rounds 3]

Each case starts an in-process sandbox on a port and a PostgreSQL database of its own on the
server of ``--pg`` (created, then dropped with its connections; the server is never restarted),
then ``forge-runner run JOB --detach`` loads the run's rows into that journal and leaves it,
and N ``forge-runner worker`` processes (concurrency 16 each) work on it until the run is
finished; then they are sent SIGTERM. The figures are read from the sandbox's own arrival log
(first call's arrival to the last's) and counters:

- quota-bound: ``--quota-users`` x ``--quota-rows-per-user`` 1-point writes
  (``user.property.set``; several per user, so that the mints, one per user, stay out of the
  quota's way), under a points quota of 60 per 5 s window, mint limit and bursts far out of
  reach, in the sandbox and in the
  runner's config alike; with 1 worker, then 3: the makespan over the plan's bound for the
  whole job (``runner.job.plan.make_plan(job, config).shortest_s``). Target for both: at most
  1.05, 0 refused (429s), every worker's exit 0, every item done.
- every budget off (limits far above what the job reaches): ``--users`` x ``--rows-per-user``
  writes; 1 and 3 workers alternated for ``--rounds`` rounds, the median items/s of each and
  their ratio. To say what binds, each case also reports the CPU seconds per second of span of
  the workers (``/proc/PID/stat``), of this process (the sandbox; ``resource``), of the
  database's server processes serving the case's database (``pg_stat_activity``'s pids, their
  ``/proc`` stat) and of the whole machine (``/proc/stat``, every core, other work included),
  and the database's commits per item (``pg_stat_database.xact_commit``). Target: every item
  done, 0 refused, exit 0 (the ratio is measured, not a target).

Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from runner.config.configfile import load_config
from runner.job.jobfile import load_job
from runner.job.plan import make_plan
from runner.logs.setup import configure_logging
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import JiraLimits, MintLimit, SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, INSTALLATION_A, make_sandbox_config, pattern_account
from runner.sandbox.world import JiraArrival

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
QUOTA, QUOTA_WINDOW_S = 60, 5.0
HIGH = 1_000_000
CONCURRENCY = 16
CASE_LIMIT_S = 600.0  # a case still going after this is stuck, not slow
TICK = os.sysconf("SC_CLK_TCK")
CpuByPid = dict[int, float]


def sandbox_config(quota_bound: bool) -> SandboxConfig:
    jira = JiraLimits(quota_points=QUOTA if quota_bound else HIGH,
                      quota_window_s=QUOTA_WINDOW_S, burst_get_post=HIGH,
                      burst_put_delete=HIGH, per_issue_2s=HIGH, per_issue_30s=HIGH)
    return dataclasses.replace(make_sandbox_config(), jira_limits=jira,
                               mint_limit=MintLimit(limit=HIGH, window_s=60.0))


def write_files(folder: Path, sb: RunningSandbox, journal: str, quota_bound: bool,
                users: int, rows_per_user: int) -> tuple[Path, Path]:
    """The runner's config (budgets as in the sandbox) and the job, in ``folder``."""
    (folder / "system-token").write_text(issue_system_token(sb.config, "dev") + "\n")
    quota = QUOTA if quota_bound else HIGH
    config = folder / "forge-runner.toml"
    config.write_text(f"""[runner]
concurrency = {CONCURRENCY}
journal = "{journal}"

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"
mint_limit = {HIGH}
mint_window_s = 60.0

[environments.dev.system_token]
file = "system-token"

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{sb.jira_base(CLOUD_A)}"
installation_id = "{INSTALLATION_A}"
environment = "dev"

[jira_budgets]
quota_points = {quota}
quota_window_s = {QUOTA_WINDOW_S}
burst_get_post = {HIGH}
burst_put_delete = {HIGH}
per_issue_2s = {HIGH}
per_issue_30s = {HIGH}
""")
    # Sorted by user, as an export by author is: each user's rows are one lane.
    (folder / "job.jsonl").write_text("".join(
        f'{{"account_id": "{pattern_account(u)}", "n": "{u}-{r}"}}\n'
        for u in range(users) for r in range(rows_per_user)))
    job = folder / "job.toml"
    job.write_text('name = "cluster"\nsite = "acme"\nrow_key = "n"\n'
                   '[source]\njsonl = "job.jsonl"\n[[actions]]\ntype = "user.property.set"\n'
                   'key = "bench"\nvalue = { n = "{n}" }\n')
    return config, job


@asynccontextmanager
async def database(admin_url: str) -> AsyncIterator[str]:
    """A new database on the server of ``admin_url``, dropped (connections and all) after."""
    name = f"forge_runner_bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def runq_s(pid: int) -> float:
    """Seconds a live process's threads have waited on a run queue for a CPU, ready to run
    (``/proc/PID/task/*/schedstat``'s second field); 0 when it is gone."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle, since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK  # less idle and iowait


@dataclasses.dataclass
class Snapshot:
    workers: float
    bench: float
    machine: float
    workers_runq: float

    @classmethod
    def take(cls, pids: list[int]) -> Snapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(sum(cpu_s(p) for p in pids), own.ru_utime + own.ru_stime, machine_busy_s(),
                   sum(runq_s(p) for p in pids))


class Arrivals(list[JiraArrival]):
    """The sandbox's arrival log: snapshots the CPU at the first arrival, sets ``all_in``
    at the ``expected``-th (both on the sandbox's loop, as the request arrives)."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.pids: list[int] = []
        self.first: Snapshot | None = None
        self.started = asyncio.Event()
        self.all_in = asyncio.Event()

    def append(self, arrival: JiraArrival) -> None:
        super().append(arrival)
        if len(self) == 1:
            self.first = Snapshot.take(self.pids)
            self.started.set()
        if len(self) >= self.expected:
            self.all_in.set()


@dataclasses.dataclass
class Case:
    workers: int
    items: int
    span_s: float
    bound_s: float
    refused: int
    done: int
    codes: list[int]
    cpu: dict[str, float]  # CPU seconds per second of span, by whom; and mints per second
    commits_per_item: float

    @property
    def per_s(self) -> float:
        return (self.items - 1) / self.span_s if self.span_s > 0 else 0.0

    @property
    def sound(self) -> bool:
        return self.refused == 0 and self.done == self.items and all(c == 0 for c in self.codes)


async def _pg(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(query, args)).fetchall()


async def _backends(admin_url: str, db: str) -> CpuByPid:
    rows = await _pg(admin_url, "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", db)
    return {int(str(pid)): cpu_s(int(str(pid))) for (pid,) in rows}


async def _commits(admin_url: str, db: str) -> int:
    # A server process's counts reach pg_stat_database when it ends (or goes idle a while):
    # read once the workers' connections are gone.
    deadline = time.monotonic() + 15.0
    # The server's processes are not ours to wait on: their list is polled.
    while (await _backends(admin_url, db)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    rows = await _pg(admin_url, "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", db)
    return int(str(rows[0][0]))


async def _spawn(folder: Path, name: str, *argv: str) -> asyncio.subprocess.Process:
    with (folder / f"{name}.out").open("wb") as out, (folder / f"{name}.err").open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=err, cwd=folder)


async def run_case(admin_url: str, workers: int, quota_bound: bool, users: int,
                   rows_per_user: int) -> Case:
    items = users * rows_per_user
    async with database(admin_url) as url:
        db = urlsplit(url).path.lstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            async with serve(sandbox_config(quota_bound), port=0) as sb:
                config, job = write_files(folder, sb, url, quota_bound, users, rows_per_user)
                bound = make_plan(load_job(job, load_config(config)),
                                  load_config(config)).shortest_s
                arrivals = Arrivals(items)
                sb.world.jira_arrivals = arrivals
                sb.world.mint_arrivals = []
                detach = await _spawn(folder, "detach", "run", str(job), "--config",
                                      str(config), "--detach", "--quiet")
                codes = [await detach.wait()]
                commits_before = await _commits(admin_url, db)
                procs = [await _spawn(folder, f"worker{n}", "worker", "--config", str(config))
                         for n in range(workers)] if codes[0] == 0 else []
                arrivals.pids = [p.pid for p in procs]
                try:
                    backends = (await _finish(admin_url, db, url, arrivals, procs)
                                if procs else ({}, {}))
                    last = Snapshot.take(arrivals.pids)
                    pg_cpu = sum(cpu_s(pid) - s for pid, s in backends[0].items()) + sum(
                        cpu_s(pid) for pid in backends[1] if pid not in backends[0])
                finally:
                    for p in procs:
                        if p.returncode is None:
                            p.send_signal(signal.SIGTERM)
                    codes += [await asyncio.wait_for(p.wait(), 60) for p in procs]
                stamps = sorted(a.at for a in arrivals)
                refused = len(sb.world.rate_limits)
                mints = sorted(a.at for a in sb.world.mint_arrivals if a.allowed)
                done = await _done(url) if procs else 0
                names = ["detach"] + [f"worker{n}" for n in range(workers)]
                for name, code in zip(names, codes, strict=True):
                    if code != 0 or (name != "detach" and done < items):
                        tail = (folder / f"{name}.err").read_text().splitlines()[-5:]
                        print(f"  {name} exited {code}:", *tail, sep="\n    ", flush=True)
            commits = await _commits(admin_url, db) - commits_before
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    first = arrivals.first or last
    cpu = {k: (getattr(last, k) - getattr(first, k)) / span if span else 0.0
           for k in ("workers", "bench", "machine", "workers_runq")}
    cpu["postgres"] = pg_cpu / span if span else 0.0
    # The rate mints were made at, first to last: one per user, the start of each lane.
    cpu["mints"] = (len(mints) - 1) / (mints[-1] - mints[0]) if len(mints) > 1 else 0.0
    return Case(workers, items, span, bound, refused, done, codes, cpu, commits / items)


async def _finish(admin_url: str, db: str, url: str, arrivals: Arrivals,
                  procs: list[asyncio.subprocess.Process]) -> tuple[CpuByPid, CpuByPid]:
    """Wait until every item has arrived and the run is finished; the case database's server
    processes with their CPU seconds at the first arrival and at the end."""
    at_first: CpuByPid = {}
    deadline = time.monotonic() + CASE_LIMIT_S
    exited = [asyncio.create_task(p.wait()) for p in procs]
    try:
        for event in (arrivals.started, arrivals.all_in):
            waiter = asyncio.create_task(event.wait())
            await asyncio.wait([waiter, *exited], timeout=CASE_LIMIT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if event is arrivals.started:
                at_first = await _backends(admin_url, db)
        # The last item has arrived; the run ends once its answer is journaled.
        while (await _pg(url, "SELECT state FROM runs"))[0][0] != "finished":
            if time.monotonic() > deadline or any(t.done() for t in exited):
                print("  the run did not finish", flush=True)
                break
            await asyncio.sleep(0.05)
        return at_first, await _backends(admin_url, db)
    finally:
        for t in exited:
            if not t.done():
                t.cancel()


async def _done(url: str) -> int:
    rows = await _pg(url, "SELECT count(*) FROM items WHERE state = 'done'")
    return int(str(rows[0][0]))


def binds(cpus: list[dict[str, float]]) -> str:
    """What the CPU figures (medians of the cases) say binds."""
    med = {k: statistics.median(c[k] for c in cpus) for k in cpus[0]}
    cores = os.cpu_count() or 1
    ours = med["workers"] + med["bench"] + med["postgres"]
    where = (f"of it the workers {med['workers']:.2f}, the sandbox {med['bench']:.2f}, "
             f"PostgreSQL {med['postgres']:.2f}, other work on the machine "
             f"{max(0.0, med['machine'] - ours):.2f}")
    if med["machine"] >= 0.9 * cores:
        return (f"the CPUs: {med['machine']:.2f} of {cores} cores busy ({where}); the workers "
                f"waited {med['workers_runq']:.2f} s per s for a CPU, ran {med['workers']:.2f}")
    return (f"not the CPUs ({med['machine']:.2f} of {cores} cores busy: {where}): the "
            f"workers wait on answers (the journal's commits, the sandbox)")


async def main(args: argparse.Namespace) -> int:
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    where = args.pg.split("@")[-1]
    print(f"workers on one run, PostgreSQL journal on {where} (a database per case); "
          f"{os.cpu_count()} cores, load average {load}", flush=True)
    met = True
    print(f"quota-bound: {args.quota_users} users x {args.quota_rows_per_user} writes, quota "
          f"{QUOTA} points per {QUOTA_WINDOW_S:g} s")
    print(f"  {'workers':<9}{'makespan s':>11}{'bound s':>9}{'/bound':>8}{'refused':>9}"
          f"{'done':>7}{'exit':>6}{'mints/s':>9}")
    for n in (1, 3):
        case = await run_case(args.pg, n, True, args.quota_users, args.quota_rows_per_user)
        ratio = case.span_s / case.bound_s
        ok = case.sound and ratio <= 1.05
        met = met and ok
        print(f"  {n:<9}{case.span_s:>11.2f}{case.bound_s:>9.2f}{ratio:>8.4f}"
              f"{case.refused:>9}{case.done:>7}{max(case.codes):>6}{case.cpu['mints']:>9.1f}"
              f"   target <= 1.05: "
              f"{'met' if ok else 'MISSED'}", flush=True)
    items = args.users * args.rows_per_user
    print(f"every budget off: {args.users} users x {args.rows_per_user} writes = {items} "
          f"items, {args.rounds} rounds")
    print(f"  {'round':<7}{'workers':>8}{'items/s':>9}{'mints/s':>9}{'refused':>9}{'done':>7}"
          f"{'exit':>6}   CPU s per s: {'workers':>8}{'(runq)':>8}{'sandbox':>8}{'postgres':>9}"
          f"{'machine':>8}  commits/item")
    rates: dict[int, list[float]] = {1: [], 3: []}
    cpus: dict[int, list[dict[str, float]]] = {1: [], 3: []}
    for r in range(args.rounds):
        for n in ((1, 3) if r % 2 == 0 else (3, 1)):
            case = await run_case(args.pg, n, False, args.users, args.rows_per_user)
            met = met and case.sound
            rates[n].append(case.per_s)
            cpus[n].append(case.cpu)
            c = case.cpu
            print(f"  {r + 1:<7}{n:>8}{case.per_s:>9.1f}{c['mints']:>9.1f}{case.refused:>9}"
                  f"{case.done:>7}"
                  f"{max(case.codes):>6}   {'':13}{c['workers']:>8.2f}"
                  f"{c['workers_runq']:>8.2f}{c['bench']:>8.2f}{c['postgres']:>9.2f}"
                  f"{c['machine']:>8.2f}  {case.commits_per_item:>12.2f}"
                  f"{'' if case.sound else '   MISSED: lost, refused or a bad exit'}",
                  flush=True)
    one, three = statistics.median(rates[1]), statistics.median(rates[3])
    print(f"  median items/s: 1 worker {one:.1f}, 3 workers {three:.1f}; 3 over 1: "
          f"{three / one:.2f}")
    print(f"  what binds, 3 workers: {binds(cpus[3])}")
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}")
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="the PostgreSQL server (any database on it) to make each case's "
                        "database on (default: %(default)s)")
    parser.add_argument("--quota-users", type=int, default=72,
                        help="users of the quota-bound job")
    parser.add_argument("--quota-rows-per-user", type=int, default=5,
                        help="1-point writes per user of the quota-bound job")
    parser.add_argument("--users", type=int, default=200, help="users of the budgets-off job")
    parser.add_argument("--rows-per-user", type=int, default=10,
                        help="writes per user of the budgets-off job")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (1 worker, 3 workers) on the budgets-off job")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    sys.exit(asyncio.run(main(args)))
