"""Makespan: a job under Jira's points quota, forge-runner against a naive baseline, one run.

    .venv/bin/python bench/makespan.py [--users 100] [--rows-per-user 5] [--quota 170]
                                       [--window 8] [--mint-limit 50] [--mint-window 5]

The job: ``users`` synthetic users (``5ca1ab1e`` + 16 hex), each with ``rows-per-user`` rows
(as an export sorted by author has them); each row adds a comment, written as its user, to one
of ``issues`` issues on acme, the comment's text naming its row. Every comment costs one point,
so with the defaults the job spends 500 points against a quota of 170 per 8 s window: the
points quota binds, over three windows. Each side runs against its own fresh in-process sandbox
with the same budgets, all scaled down from Jira's and the gateway's, in both the sandbox and
forge-runner's config: the points quota (65,000/h -> ``quota`` per ``window`` s), mints (1,000 a
minute -> ``mint-limit`` per ``mint-window`` s, sliding), bursts (100 and 50 per second ->
``burst`` and half of it), per-issue writes at Jira's 20/2 s and 100/30 s; every Jira call takes
50-150 ms.

- forge-runner: the job and config files run by the engine as ``forge-runner run`` runs it
  (SQLite journal, the run's statistics observer);
- baseline, the way users write it today: ``asyncio.gather`` over one coroutine per user, which
  mints its user's token (once per user, sleeping ``Retry-After`` on a 429) and then posts its
  rows' comments in order, each under one ``aiolimiter.AsyncLimiter(quota, window)`` (the quota
  as Atlassian states it), sleeping ``Retry-After`` on a 429 and sending again.

Each side starts at the top of a quota window. That is the worst start for both: a run that
starts later in a window finds the whole window's quota there to spend in less time.

Printed for each: the makespan over the plan's lower bound (``runner.plan.make_plan``), 429s by
reason and mints per user (the sandbox's counters), and items lost or duplicated (each row's
comment text counted in the sandbox's state: exactly once is right), and for how long the app's
quota stood spent (from a window's first quota 429 to its reset: every other client of the app,
on every tenant, refused meanwhile). Target for forge-runner:
makespan at most 1.05 x the bound, no quota 429, one mint per user, nothing lost or duplicated;
the exit code is 1 when it misses. About a minute in all with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from runner.config.configfile import Config, load_config
from runner.engine.engine import Engine
from runner.job.jobfile import load_job
from runner.job.plan import Plan, make_plan
from runner.journal import ItemState, SqliteJournal
from runner.logs.setup import configure_logging
from runner.minting.gateway import MUTATION
from runner.progress import RunStats
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import (
    Faults,
    JiraLimits,
    MintLimit,
    SandboxConfig,
    SandboxIssue,
)
from runner.sandbox.jira.limits import QUOTA_REASON
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    CLOUD_A,
    make_sandbox_config,
    pattern_account,
    workspace_ari,
    write_runner_config,
)

NOTE = "Migrated note {row}"
JOB = """name = "makespan"
site = "acme"
row_key = "row"

[source]
csv = "rows.csv"

[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated note {row}"
"""


@dataclass(frozen=True)
class Settings:
    users: int
    rows_per_user: int
    issues: int
    quota: int
    window_s: float
    mint_limit: int
    mint_window_s: float
    burst: int
    concurrency: int

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """(row name, account ID, issue key), a user's rows together."""
        for u in range(self.users):
            for r in range(self.rows_per_user):
                n = u * self.rows_per_user + r
                yield f"r{n:05d}", pattern_account(u), f"MIG-{n % self.issues + 1}"


@dataclass
class Outcome:
    name: str
    makespan_s: float
    limited: Mapping[str, int]  # 429s by reason
    mints: Mapping[str, int]  # per account ID
    lost: int
    duplicated: int
    spent_s: float  # time the app's quota stood spent: every client of the app refused


def sandbox_config(s: Settings) -> SandboxConfig:
    base = make_sandbox_config()
    acme = dataclasses.replace(
        base.sites["acme"],
        issues=tuple(SandboxIssue(f"MIG-{n}", "MIG", f"Issue {n}")
                     for n in range(1, s.issues + 1)),
    )
    return dataclasses.replace(
        base,
        sites={**base.sites, "acme": acme},
        jira_limits=JiraLimits(quota_points=s.quota, quota_window_s=s.window_s,
                               burst_get_post=s.burst, burst_put_delete=max(1, s.burst // 2)),
        mint_limit=MintLimit(limit=s.mint_limit, window_s=s.mint_window_s,
                             algorithm="sliding", failure="retry_after"),
        faults=Faults(latency_ms_min=50, latency_ms_max=150),
    )


def runner_files(folder: Path, sb: RunningSandbox, s: Settings) -> tuple[Path, Path]:
    """The job and the config forge-runner runs, written to ``folder``."""
    lines = ["row,account_id,issue"] + [",".join(r) for r in s.rows()]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    job = folder / "job.toml"
    job.write_text(JOB)
    budgets = (f"[jira_budgets]\nquota_points = {s.quota}\nquota_window_s = {s.window_s}\n"
               f"burst_get_post = {s.burst}\nburst_put_delete = {max(1, s.burst // 2)}\n")
    config = write_runner_config(folder, sb, mint_limit=s.mint_limit,
                                 mint_window_s=s.mint_window_s, concurrency=s.concurrency,
                                 extra=budgets)
    return job, config


async def top_of_window(window_s: float) -> None:
    """Sleep to just after the start of the next quota window (windows are aligned to
    multiples of ``window_s`` since the epoch, in the sandbox as in Jira)."""
    now = time.time()
    await asyncio.sleep(math.ceil(now / window_s) * window_s - now + 0.01)


def texts(node: Any) -> Iterator[str]:
    """Every text in an ADF document."""
    if isinstance(node, Mapping):
        if isinstance(node.get("text"), str):
            yield node["text"]
        for child in node.get("content", ()):
            yield from texts(child)


def tally(name: str, sb: RunningSandbox, s: Settings, makespan: float) -> Outcome:
    world = sb.world
    written: Counter[str] = Counter()
    for issue in world.parts["jira"].site(CLOUD_A).issues.values():
        for comment in issue.comments:
            written.update(t for t in texts(comment.body) if t.startswith("Migrated note "))
    expected = [NOTE.format(row=row) for row, _, _ in s.rows()]
    lost = sum(1 for e in expected if written[e] == 0)
    duplicated = sum(written[e] - 1 for e in expected if written[e] > 1)
    limited = Counter(e.reason for e in world.rate_limits if e.api == "jira")
    limited.update("mint" for e in world.rate_limits if e.api == "gateway")
    mints = {account: n for (_, account), n in world.mints_by_user.items()}
    # From the first quota 429 of a window to its reset, the app had nothing left.
    first: dict[int, float] = {}
    for e in world.rate_limits:
        if e.reason == QUOTA_REASON:
            first.setdefault(math.floor(e.at / s.window_s), e.at)
    spent = sum((w + 1) * s.window_s - at for w, at in first.items())
    return Outcome(name, makespan, dict(limited), mints, lost, duplicated, spent)


async def run_forge_runner(sb: RunningSandbox, s: Settings, folder: Path) -> tuple[Outcome, Plan]:
    job_path, config_path = runner_files(folder, sb, s)
    config: Config = load_config(config_path)
    job = load_job(job_path, config)
    plan = make_plan(job, config)
    async with SqliteJournal(config.runner.journal) as journal:
        handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                        config.fingerprint, job.text)
        await journal.set_total(handle.run_id, plan.items)
        stats = RunStats.from_config(config)
        stats.set_total(plan.items)
        await top_of_window(s.window_s)
        start = time.perf_counter()
        result = await Engine(config, job, journal, observer=stats).run(handle)
        makespan = time.perf_counter() - start
    if result.counts.get(ItemState.DONE, 0) != plan.items:
        print(f"  forge-runner: {dict(result.counts)}", flush=True)
    return tally("forge-runner", sb, s, makespan), plan


async def run_baseline(sb: RunningSandbox, s: Settings) -> Outcome:
    system_token = issue_system_token(sb.config, "dev")
    context = workspace_ari(CLOUD_A)
    jira = sb.jira_base(CLOUD_A) + "/rest/api/3"
    by_user: dict[str, list[tuple[str, str]]] = {}
    for row, account, issue in s.rows():
        by_user.setdefault(account, []).append((row, issue))
    limiter = AsyncLimiter(s.quota, s.window_s)

    async def mint(http: aiohttp.ClientSession, user: str) -> str:
        body = {"query": MUTATION, "variables": {"input": {"contextIds": [context],
                                                           "userId": user}}}
        headers = {"Authorization": f"Bearer {system_token}"}
        while True:
            async with http.post(sb.gateway_url, json=body, headers=headers) as response:
                if response.status == 429:
                    wait = float(response.headers.get("Retry-After", "1"))
                else:
                    answer = await response.json()
                    token: str = answer["data"]["offlineUserAuthToken"]["authToken"]["token"]
                    return token
            await asyncio.sleep(wait)

    async def comment(http: aiohttp.ClientSession, token: str, row: str, issue: str) -> None:
        doc = {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": NOTE.format(row=row)}]}]}
        headers = {"Authorization": f"Bearer {token}"}
        while True:
            async with limiter, http.post(f"{jira}/issue/{issue}/comment", json={"body": doc},
                                          headers=headers) as response:
                await response.read()
                if response.status != 429:
                    return  # anything else is the item's end, as a naive loop has it
                wait = float(response.headers.get("Retry-After", "1"))
            await asyncio.sleep(wait)

    async def user(http: aiohttp.ClientSession, account: str, rows: Sequence[tuple[str, str]]
                   ) -> None:
        token = await mint(http, account)
        for row, issue in rows:
            await comment(http, token, row, issue)

    await top_of_window(s.window_s)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(user(http, a, rows) for a, rows in by_user.items()))
    makespan = time.perf_counter() - start
    return tally("naive aiolimiter", sb, s, makespan)


def report(outcomes: Sequence[Outcome], plan: Plan, s: Settings) -> bool:
    bound = plan.shortest_s
    binding = plan.binding
    print()
    if binding is not None:
        print(f"plan: {plan.items} items, {plan.points} points, {plan.mints} mints; shortest "
              f"possible {bound:.1f} s, bound by the {binding.budget} ({binding.limit})")
    reasons = ("jira-quota-global-based", "jira-burst-based", "jira-per-issue-on-write", "mint")
    short = {"jira-quota-global-based": "quota", "jira-burst-based": "burst",
             "jira-per-issue-on-write": "per-issue", "mint": "mint"}
    head = "".join(f"{short[r]:>10}" for r in reasons)
    print(f"{'':<18}{'makespan s':>11}{'/bound':>8}   429s:{head}{'other':>7}"
          f"{'mints/user':>14}{'lost':>6}{'dup':>5}{'quota spent s':>15}")
    for o in outcomes:
        counts = "".join(f"{o.limited.get(r, 0):>10}" for r in reasons)
        other = sum(n for r, n in o.limited.items() if r not in reasons)
        most = max(o.mints.values(), default=0)
        mints = f"{sum(o.mints.values()) / max(1, s.users):.2f} (<={most})"
        print(f"{o.name:<18}{o.makespan_s:>11.1f}{o.makespan_s / bound:>8.3f}        {counts}"
              f"{other:>7}{mints:>14}{o.lost:>6}{o.duplicated:>5}{o.spent_s:>15.1f}")
    ours = outcomes[0]
    met = (ours.makespan_s <= 1.05 * bound
           and ours.limited.get("jira-quota-global-based", 0) == 0
           and len(ours.mints) == s.users and set(ours.mints.values()) == {1}
           and ours.lost == 0 and ours.duplicated == 0)
    print()
    print("target for forge-runner: makespan <= 1.05 x bound, no quota 429, one mint per user, "
          "nothing lost or duplicated: " + ("met" if met else "MISSED"))
    return met


async def main(s: Settings) -> int:
    print(f"makespan: {s.users} users x {s.rows_per_user} comments on {s.issues} issues; quota "
          f"{s.quota} points per {s.window_s:g} s, mints {s.mint_limit} per {s.mint_window_s:g} s,"
          f" bursts {s.burst}/{max(1, s.burst // 2)} per s, Jira latency 50-150 ms", flush=True)
    with tempfile.TemporaryDirectory(prefix="makespan-") as tmp:
        async with serve(sandbox_config(s), port=0) as sb:
            ours, plan = await run_forge_runner(sb, s, Path(tmp))
        print(f"  forge-runner done in {ours.makespan_s:.1f} s", flush=True)
    async with serve(sandbox_config(s), port=0) as sb:
        theirs = await run_baseline(sb, s)
    print(f"  baseline done in {theirs.makespan_s:.1f} s", flush=True)
    return 0 if report([ours, theirs], plan, s) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100, help="synthetic users (100)")
    parser.add_argument("--rows-per-user", type=int, default=5, help="comments per user (5)")
    parser.add_argument("--issues", type=int, default=50, help="issues commented on (50)")
    parser.add_argument("--quota", type=int, default=170, help="points per window (170)")
    parser.add_argument("--window", type=float, default=8.0, help="quota window, s (8)")
    parser.add_argument("--mint-limit", type=int, default=50, help="mints per window (50)")
    parser.add_argument("--mint-window", type=float, default=5.0, help="mint window, s (5)")
    parser.add_argument("--burst", type=int, default=40,
                        help="GET/POST calls per second per endpoint; PUT/DELETE half (40)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="forge-runner's concurrency (16)")
    a = parser.parse_args()
    settings = Settings(a.users, a.rows_per_user, a.issues, a.quota, a.window, a.mint_limit,
                        a.mint_window, a.burst, a.concurrency)
    # One line per call would drown the table: only warnings and worse.
    configure_logging(level=logging.WARNING)
    sys.exit(asyncio.run(main(settings)))
