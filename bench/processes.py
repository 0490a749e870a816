"""Several processes on one environment and one journal: do they spend its budgets together?

    .venv/bin/python bench/processes.py [--users 600] [--quota-calls 360] [--budgets ADMIN_URL]

Against one in-process sandbox (the gateway allows 100 mints in any sliding 6 s and refuses the
rest with a 429), ``forge-runner run`` processes share the SQLite journal of one folder (or,
with ``--budgets``, keep their budgets in PostgreSQL, a database made for each case on that
server and dropped after):

- mint-bound: a job of ``--users`` users (one mint and one cheap write each, Jira's limits out
  of the way) split over 1, then 2, then 3 processes; the mint rate over the budget is read from
  the sandbox's own arrival log (accepted mints over the span from the first arrival to the
  last), and refused mints from its counters;
- quota-bound: ``--quota-calls`` writes of 1 point under a quota of 60 points per 5 s window
  (mints out of the way) split over 3 processes; the makespan (first call's arrival to the
  last's) over the plan's bound for the whole job (``forge-runner plan``'s points-quota line).

Targets: one process >= 0.99 of the mint budget, 2 and 3 together >= 0.97, 0 refused in every
case, the quota-bound makespan within 1.05 of the plan's bound; exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

from memory import bench_database

from runner.budgets.quota import DEFAULT_BURST, DEFAULT_MARGIN
from runner.logs.setup import configure_logging
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import JiraLimits, MintLimit, SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, INSTALLATION_A, make_sandbox_config, pattern_account

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
MINTS, MINT_WINDOW_S = 100, 6.0
QUOTA, QUOTA_WINDOW_S = 60, 5.0
HIGH = 1_000_000


def sandbox_config(mint_bound: bool) -> SandboxConfig:
    mints = MintLimit(limit=MINTS if mint_bound else HIGH, window_s=MINT_WINDOW_S)
    jira = (JiraLimits(quota_points=HIGH, burst_get_post=HIGH, burst_put_delete=HIGH)
            if mint_bound else JiraLimits(quota_points=QUOTA, quota_window_s=QUOTA_WINDOW_S,
                                          burst_put_delete=HIGH))
    return dataclasses.replace(make_sandbox_config(), mint_limit=mints, jira_limits=jira)


def write_config(folder: Path, sb: RunningSandbox, mint_bound: bool, budgets: str | None
                 ) -> Path:
    (folder / "system-token").write_text(issue_system_token(sb.config, "dev") + "\n")
    quota = (f"quota_points = {HIGH}\nburst_put_delete = {HIGH}" if mint_bound
             else f"quota_points = {QUOTA}\nquota_window_s = {QUOTA_WINDOW_S}\n"
                  f"burst_put_delete = {HIGH}")
    path = folder / "forge-runner.toml"
    path.write_text(f"""[runner]
concurrency = 16
journal = "journal.db"
{f'budgets = "{budgets}"' if budgets else ""}

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"
mint_limit = {MINTS if mint_bound else HIGH}
mint_window_s = {MINT_WINDOW_S}

[environments.dev.system_token]
file = "system-token"

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{sb.jira_base(CLOUD_A)}"
installation_id = "{INSTALLATION_A}"
environment = "dev"

[jira_budgets]
{quota}
""")
    return path


def write_jobs(folder: Path, users: int, parts: int, tag: str) -> list[Path]:
    jobs = []
    for p in range(parts):
        rows = [pattern_account(n) for n in range(users) if n % parts == p]
        (folder / f"{tag}{p}.jsonl").write_text(
            "".join(f'{{"account_id": "{a}"}}\n' for a in rows))
        path = folder / f"{tag}{p}.toml"
        path.write_text(f'name = "{tag}{p}"\nsite = "acme"\n[source]\njsonl = "{tag}{p}.jsonl"\n'
                        '[[actions]]\ntype = "user.property.set"\nkey = "bench"\n'
                        'value = { n = "1" }\n')
        jobs.append(path)
    return jobs


async def run_processes(folder: Path, config: Path, jobs: list[Path]) -> list[int]:
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "run", str(job), "--config", str(config), "--quiet",
        cwd=folder, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL) for job in jobs]
    return [await p.wait() for p in procs]


def budgets_at(admin_url: str | None) -> contextlib.AbstractContextManager[str | None]:
    """Each case's budgets in a database of its own (a quota row made by one case's config
    would otherwise pace the next), or in the SQLite journal."""
    return bench_database(admin_url) if admin_url else contextlib.nullcontext()


async def mint_case(users: int, parts: int, admin: str | None) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp, budgets_at(admin) as budgets:
        folder = Path(tmp)
        async with serve(sandbox_config(True), port=0) as sb:
            sb.world.mint_arrivals = []
            config = write_config(folder, sb, True, budgets)
            codes = await run_processes(folder, config, write_jobs(folder, users, parts, "m"))
            accepted = sorted(a.at for a in sb.world.mint_arrivals if a.allowed)
            refused = sb.world.mints_rejected["dev"]
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    return rate / (MINTS / MINT_WINDOW_S), refused, max(codes)


async def quota_case(calls: int, admin: str | None) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as tmp, budgets_at(admin) as budgets:
        folder = Path(tmp)
        async with serve(sandbox_config(False), port=0) as sb:
            sb.world.jira_arrivals = []
            config = write_config(folder, sb, False, budgets)
            codes = await run_processes(folder, config, write_jobs(folder, calls, 3, "q"))
            arrivals = sorted(a.at for a in sb.world.jira_arrivals)
            refused = len(sb.world.rate_limits)
    makespan = arrivals[-1] - arrivals[0]
    # The plan's points-quota bound (runner.job.plan): all but the burst, at the paced rate.
    rate = (1 - DEFAULT_MARGIN) * QUOTA / QUOTA_WINDOW_S
    bound = max(0, calls - int(QUOTA * DEFAULT_BURST)) / rate
    return makespan, bound, refused, max(codes)


async def main(users: int, quota_calls: int, budgets: str | None) -> int:
    where = (f"a database per case on {budgets.split('@')[-1].rsplit('/', 1)[0]}" if budgets
             else "the SQLite journal")
    print(f"processes on one environment, budgets in {where}; mint budget {MINTS} per "
          f"{MINT_WINDOW_S:g} s (sliding), quota {QUOTA} per {QUOTA_WINDOW_S:g} s", flush=True)
    met = True
    print(f"{'mint-bound, users ' + str(users):<32}{'rate/budget':>12}{'refused':>9}"
          f"{'exit':>6}")
    for parts in (1, 2, 3):
        started = time.perf_counter()
        share, refused, code = await mint_case(users, parts, budgets)
        target = 0.99 if parts == 1 else 0.97
        ok = share >= target and refused == 0 and code == 0
        met = met and ok
        print(f"  {parts} process{'es' if parts > 1 else '':<3}{'':<18}{share:>12.4f}"
              f"{refused:>9}{code:>6}   target >= {target}: {'met' if ok else 'MISSED'}"
              f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    makespan, bound, refused, code = await quota_case(quota_calls, budgets)
    ratio = makespan / bound
    ok = ratio <= 1.05 and refused == 0 and code == 0
    met = met and ok
    print(f"quota-bound, {quota_calls} calls over 3 processes: makespan {makespan:.2f} s, "
          f"plan's bound {bound:.2f} s, ratio {ratio:.4f}, refused {refused}, exit {code}"
          f"   target <= 1.05: {'met' if ok else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=600, help="users of the mint-bound job")
    parser.add_argument("--quota-calls", type=int, default=360,
                        help="1-point writes of the quota-bound job")
    parser.add_argument("--budgets", metavar="ADMIN_URL",
                        help="keep the budgets in PostgreSQL: a database made for each case on "
                        "this URL's server (dropped after)")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    sys.exit(asyncio.run(main(args.users, args.quota_calls, args.budgets)))
