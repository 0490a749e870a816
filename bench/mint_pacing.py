"""Mint pacing: forge-runner's minter against a naive ``aiolimiter`` baseline, one run.

    .venv/bin/python bench/mint_pacing.py [--users 2000] [--limit 100] [--window 6]

Each side mints a token for every synthetic user (``5ca1ab1e`` + 16 hex) against its own fresh
in-process sandbox whose gateway allows ``limit`` mints in any sliding ``window`` seconds and
refuses the rest with a 429 and ``Retry-After``:

- forge-runner: ``Minter.token_for`` from a pool of workers, as the engine calls it;
- baseline, written the way its users write it: ``asyncio.gather`` over every user under one
  ``aiolimiter.AsyncLimiter(limit, window)``, sleeping ``Retry-After`` on a 429 and retrying.

Printed for both: mints, wall time, achieved mint rate over the budget, and refused mints (429s,
read from the sandbox's counters). Target for forge-runner: at least 0.97 of the budget and no
refused mint; the exit code is 1 when it misses. 2,000 users at 100 per 6 s take about two
minutes per side; ``--users`` shortens the run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiolimiter import AsyncLimiter

from runner.budgets.mint import MintBuckets
from runner.config.configfile import (
    Config,
    EnvironmentConfig,
    RunnerSettings,
    SiteConfig,
    SystemTokenSource,
)
from runner.logs.setup import configure_logging
from runner.minting.gateway import MUTATION
from runner.minting.minter import Minter
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import MintLimit, SandboxConfig
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    CLOUD_A,
    INSTALLATION_A,
    make_sandbox_config,
    pattern_account,
    workspace_ari,
)

TOKEN_VARIABLE = "FORGE_RUNNER_BENCH_SYSTEM_TOKEN"
APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"


@dataclass(frozen=True)
class Result:
    name: str
    minted: int
    wall_s: float
    refused: int

    def rate(self) -> float:
        return self.minted / self.wall_s if self.wall_s > 0 else 0.0


def sandbox_config(limit: int, window_s: float) -> SandboxConfig:
    mint = MintLimit(limit=limit, window_s=window_s, algorithm="sliding", failure="retry_after")
    return dataclasses.replace(make_sandbox_config(), mint_limit=mint)


async def run_forge_runner(
    sb: RunningSandbox, users: list[str], limit: int, window_s: float, workers: int
) -> Result:
    os.environ[TOKEN_VARIABLE] = issue_system_token(sb.config, "dev")
    env = EnvironmentConfig(
        "dev",
        APP_ID,
        SystemTokenSource(env=TOKEN_VARIABLE),
        gateway_url=sb.gateway_url,
        mint_limit=limit,
        mint_window_s=window_s,
    )
    site = SiteConfig("acme", CLOUD_A, INSTALLATION_A, "dev", sb.jira_base(CLOUD_A),
                      workspace_ari(CLOUD_A))
    config = Config(path=Path("bench"), runner=RunnerSettings(concurrency=workers),
                    environments={"dev": env}, sites={"acme": site})
    pending = iter(users)
    async with aiohttp.ClientSession() as session:
        minter = Minter.from_config(config, "dev", session=session, buckets=MintBuckets())

        async def worker() -> None:
            for user in pending:
                await minter.token_for(site, user)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())
        wall = time.perf_counter() - start
    world = sb.world
    return Result("forge-runner", world.mints_accepted["dev"], wall, world.mints_rejected["dev"])


async def run_baseline(sb: RunningSandbox, users: list[str], limit: int, window_s: float) -> Result:
    token = issue_system_token(sb.config, "dev")
    headers = {"Authorization": f"Bearer {token}"}
    limiter = AsyncLimiter(limit, window_s)
    context = workspace_ari(CLOUD_A)

    async def mint(session: aiohttp.ClientSession, user: str) -> None:
        body = {"query": MUTATION,
                "variables": {"input": {"contextIds": [context], "userId": user}}}
        while True:
            async with limiter, session.post(sb.gateway_url, json=body, headers=headers) as resp:
                if resp.status != 429:
                    await resp.read()
                    return
                wait = float(resp.headers.get("Retry-After", "1"))
            await asyncio.sleep(wait)

    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(mint(session, user) for user in users))
    wall = time.perf_counter() - start
    world = sb.world
    return Result("naive aiolimiter", world.mints_accepted["dev"], wall,
                  world.mints_rejected["dev"])


async def main(count: int, limit: int, window_s: float, workers: int) -> int:
    users = [pattern_account(n) for n in range(count)]
    budget = limit / window_s
    print(f"mint pacing: {count} users, budget {limit} per {window_s:g} s ({budget:.2f}/s), "
          "sandbox sliding window, 429 + Retry-After", flush=True)
    results: list[Result] = []
    async with serve(sandbox_config(limit, window_s), port=0) as sb:
        results.append(await run_forge_runner(sb, users, limit, window_s, workers))
    print(f"  forge-runner done in {results[-1].wall_s:.1f} s", flush=True)
    async with serve(sandbox_config(limit, window_s), port=0) as sb:
        results.append(await run_baseline(sb, users, limit, window_s))
    print(f"  baseline done in {results[-1].wall_s:.1f} s", flush=True)
    print()
    print(f"{'':<20}{'mints':>8}{'wall s':>10}{'mints/s':>10}{'rate/budget':>13}"
          f"{'refused (429)':>15}")
    for r in results:
        print(f"{r.name:<20}{r.minted:>8}{r.wall_s:>10.1f}{r.rate():>10.2f}"
              f"{r.rate() / budget:>13.3f}{r.refused:>15}")
    ours = results[0]
    met = ours.minted == count and ours.rate() / budget >= 0.97 and ours.refused == 0
    print()
    print("target for forge-runner: >= 0.97 of budget and no refused mint: "
          + ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="synthetic users (2000)")
    parser.add_argument("--limit", type=int, default=100, help="mints per window (100)")
    parser.add_argument("--window", type=float, default=6.0, help="window in seconds (6)")
    parser.add_argument("--workers", type=int, default=16,
                        help="forge-runner workers calling the minter (16)")
    args = parser.parse_args()
    # One line per mint would drown the table: only warnings and worse.
    configure_logging(level=logging.WARNING)
    sys.exit(asyncio.run(main(args.users, args.limit, args.window, args.workers)))
