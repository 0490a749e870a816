"""Peak memory of `forge-runner plan` and `forge-runner run` on 1,000,000 rows versus 100,000.

    .venv/bin/python bench/memory.py [--rows 1000000] [--small 100000] [--users 10000]
                                     [--action python|http] [--skip-run] [--keep DIR]
                                     [--postgres ADMIN_URL]

``--postgres`` runs on the PostgreSQL journal instead of the SQLite file: each `run` in a
database of its own made on that server (and dropped after).

Generates the same job at two sizes (a CSV of ``rows`` and of ``small`` rows: synthetic users
``5ca1ab1e`` + 16 hex, cycling over ``users`` of them and over ``issues`` issues), then runs each
command as a child process and reads its peak resident memory (the RSS high-water mark) from
``os.wait4``, which reports that child alone: the bench itself and the sandbox don't count.

`run` does every item, with every budget out of the way, one of two ways:
- ``--action python`` (default): a Python action that does nothing, so the run is the engine,
  the source and the journal alone: what grows with the job if anything does;
- ``--action http``: ``issue.property.set`` against a sandbox served by a separate process
  (``forge-runner sandbox``), Jira limits off and mints unlimited: the whole path, slower.

Targets (issue 4): every peak <= 200 MB, and each command's peak on ``rows`` within 20% of its
peak on ``small``. The exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from runner.sandbox.config import load_sandbox_config
from runner.sandbox.systemtokens import issue_system_token

CLOUD_ID = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
INSTALLATION = "ari:cloud:ecosystem::installation/3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e"
APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
HIGH = 100_000_000
LIMIT_MB = 200.0
WITHIN = 0.20

NOOP_MODULE = '''\
"""A Python action that does nothing: the engine, the source and the journal alone."""


async def noop(jira, row):
    return None
'''

PYTHON_ACTION = """\
[[actions]]
python = "bench_noop:noop"
idempotent = true
"""

HTTP_ACTION = """\
[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "bench"
value = { n = "{legacy_id}" }
"""


@dataclass(frozen=True)
class Measure:
    command: str
    rows: int
    peak_mb: float
    wall_s: float
    code: int


def write_csv(path: Path, rows: int, users: int, issues: int) -> None:
    with path.open("w") as f:
        f.write("legacy_id,account_id,issue\n")
        for n in range(rows):
            f.write(f"LEG-{n:08d},5ca1ab1e{n % users:016x},MIG-{n % issues + 1}\n")


def sandbox_toml(issues: int, latency_ms: float = 0.0) -> str:
    listed = ",\n".join(
        f'  {{ key = "MIG-{n}", project = "MIG" }}' for n in range(1, issues + 1)
    )
    return f"""\
[sandbox]
host = "127.0.0.1"
port = 0

[sandbox.environments.dev]
client_id = "dev"

[sandbox.mint_limit]
limit = {HIGH}

[sandbox.jira_limits]
enabled = false

[sandbox.faults]
latency_ms_min = {latency_ms}
latency_ms_max = {latency_ms}

[sandbox.sites.acme]
cloud_id = "{CLOUD_ID}"
active_account_pattern = "^5ca1ab1e[0-9a-f]{{16}}$"
projects = ["MIG"]
issues = [
{listed}
]
"""


def runner_toml(url: str, journal: str, concurrency: int) -> str:
    return f"""\
[runner]
concurrency = {concurrency}
journal = "{journal}"

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{url}/graphql"
mint_limit = {HIGH}

[environments.dev.system_token]
file = "system-token"

[sites.acme]
cloud_id = "{CLOUD_ID}"
api_base_url = "{url}/ex/jira/{CLOUD_ID}"
installation_id = "{INSTALLATION}"
environment = "dev"

[jira_budgets]
quota_points = {HIGH}
burst_get_post = {HIGH}
burst_put_delete = {HIGH}
per_issue_2s = {HIGH}
per_issue_30s = {HIGH}
"""


def measure(name: str, rows: int, argv: Sequence[str], cwd: Path) -> Measure:
    """Run ``argv`` as a child and read its own peak RSS from ``wait4``."""
    start = time.perf_counter()
    log = cwd / f"{name}-{rows}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    peak = usage.ru_maxrss * scale / 1e6
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        print(f"  {name} on {rows:,} rows exited {proc.returncode}:\n{tail}", flush=True)
    return Measure(name, rows, peak, wall, proc.returncode)


class Sandbox:
    """``forge-runner sandbox`` in its own process, so its memory is not the bench's."""

    def __init__(self, folder: Path, issues: int, latency_ms: float = 0.0,
                 cpus: set[int] | None = None) -> None:
        """``cpus``: the only CPUs it may run on (Linux); by default, any."""
        config = folder / "sandbox.toml"
        config.write_text(sandbox_toml(issues, latency_ms))
        # A child starts with its parent's CPUs: this thread's, lent for the start.
        lent = os.sched_getaffinity(0) if cpus else None
        if cpus:
            os.sched_setaffinity(0, cpus)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runner", "sandbox", "--config", str(config)],
                stdout=subprocess.PIPE, text=True, cwd=folder,
            )
        finally:
            if lent:
                os.sched_setaffinity(0, lent)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        found = re.search(r"serving on (http://\S+)", first)
        if found is None:
            self.proc.kill()
            raise SystemExit(f"the sandbox did not start: {first!r}")
        self.url = found.group(1)
        table = tomllib.loads(config.read_text())["sandbox"]
        token = issue_system_token(load_sandbox_config(table), "dev")
        (folder / "system-token").write_text(token + "\n")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="the large job (1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="the small job (100,000)")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users (10,000)")
    parser.add_argument("--issues", type=int, default=1_000, help="distinct issues (1,000)")
    parser.add_argument("--action", choices=("python", "http"), default="python")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-run", action="store_true", help="measure plan only")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="run on the PostgreSQL journal, a database made on this server")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args()

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="forge-runner-memory-") as folder:
        return bench(args, Path(folder))


def bench(args: argparse.Namespace, folder: Path) -> int:
    sizes = (args.small, args.rows)
    print(f"memory: plan and run on {args.small:,} and {args.rows:,} rows "
          f"({args.users:,} users, {args.issues:,} issues, run action: {args.action}, journal: "
          f"{'PostgreSQL' if args.postgres else 'SQLite'})", flush=True)
    (folder / "bench_noop.py").write_text(NOOP_MODULE)
    actions = PYTHON_ACTION if args.action == "python" else HTTP_ACTION
    for rows in sizes:
        data = folder / f"rows-{rows}.csv"
        if not data.exists():
            write_csv(data, rows, args.users, args.issues)
        (folder / f"job-{rows}.toml").write_text(
            f'name = "memory-{rows}"\nsite = "acme"\nrow_key = "legacy_id"\n\n'
            f'[source]\ncsv = "{data.name}"\n\n{actions}'
        )
    sandbox = Sandbox(folder, args.issues)
    results: list[Measure] = []
    try:
        (folder / "config.toml").write_text(
            runner_toml(sandbox.url, "journal.db", args.concurrency))
        base = [sys.executable, "-m", "runner"]
        for rows in sizes:
            job = f"job-{rows}.toml"
            results.append(measure("plan", rows, [*base, "plan", job, "--config",
                                                  "config.toml"], folder))
            print(f"  plan {rows:>10,} rows: {results[-1].peak_mb:7.1f} MB "
                  f"in {results[-1].wall_s:.1f} s", flush=True)
        if not args.skip_run:
            for rows in sizes:
                journal = folder / "journal.db"
                for leftover in folder.glob("journal.db*"):
                    if leftover.is_file():
                        leftover.unlink()
                job = f"job-{rows}.toml"
                with contextlib.ExitStack() as stack:
                    config = "config.toml"
                    if args.postgres:
                        url = stack.enter_context(bench_database(args.postgres))
                        config = f"config-pg-{rows}.toml"
                        (folder / config).write_text(
                            runner_toml(sandbox.url, url, args.concurrency))
                    results.append(measure("run", rows, [*base, "run", job, "--config", config,
                                                         "--quiet", "--log-format", "plain"],
                                           folder))
                    size = (database_size(url) if args.postgres
                            else journal.stat().st_size if journal.exists() else 0)
                print(f"  run  {rows:>10,} rows: {results[-1].peak_mb:7.1f} MB "
                      f"in {results[-1].wall_s:.1f} s ({rows / results[-1].wall_s:,.0f} items/s,"
                      f" journal {size / 1e6:.0f} MB)", flush=True)
    finally:
        sandbox.stop()
    return report(results, args.small, args.rows)


@contextlib.contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    """A database of the bench's own on ``admin_url``'s server; dropped after."""
    import psycopg
    from psycopg import sql

    name = f"forge_runner_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def database_size(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def report(results: list[Measure], small: int, large: int) -> int:
    print()
    print(f"{'command':<8}{'rows':>12}{'peak MB':>10}{'wall s':>9}{'exit':>6}")
    for r in results:
        print(f"{r.command:<8}{r.rows:>12,}{r.peak_mb:>10.1f}{r.wall_s:>9.1f}{r.code:>6}")
    met = all(r.code == 0 and r.peak_mb <= LIMIT_MB for r in results)
    for command in ("plan", "run"):
        by_rows = {r.rows: r.peak_mb for r in results if r.command == command}
        if small in by_rows and large in by_rows:
            growth = by_rows[large] / by_rows[small] - 1
            print(f"{command}: {large:,} rows use {growth:+.1%} of the memory of {small:,}")
            met = met and growth <= WITHIN
    print(f"targets (every peak <= {LIMIT_MB:.0f} MB, within {WITHIN:.0%}): "
          + ("met" if met else "MISSED"))
    # The bench's own children: a sanity line for anyone comparing with RUSAGE_CHILDREN.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"(largest child of this bench, sandbox included: {children:.0f} MB)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
