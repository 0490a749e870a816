"""What a run's rows are worked with: one HTTP session, the budgets, a minter per environment
and the call executor. Built once per process: the engine builds them for its run, a worker
for every run it takes lanes of (a user's token is minted once whichever run needs it).

Every request carries ``User-Agent: forge-runner/VERSION (worker ID)``: the ID is this
process's, unique per start, so Jira's and the gateway's logs (and the sandbox's) tell which
process sent what.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache

import aiohttp

from runner.budgets import Clock
from runner.budgets.jira import JiraPacer
from runner.budgets.mint import MintBuckets
from runner.budgets.sharedjira import SharedJiraPacer
from runner.budgets.sharedmint import UNANSWERED_MINT_S, SharedMintBuckets
from runner.budgets.store import BudgetStore
from runner.config.configfile import Config
from runner.events import Observer
from runner.jira.client import JiraClient, last_check_trace
from runner.jira.executor import CallExecutor
from runner.minting.minter import Minter


@cache
def process_id() -> str:
    """This process's ID among every forge-runner process: host, pid and a random part (a pid
    is reused; a restarted worker is a new one)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def user_agent() -> str:
    from runner import __version__

    return f"forge-runner/{__version__} (worker {process_id()})"


@dataclass
class Tools:
    session: aiohttp.ClientSession
    buckets: MintBuckets | SharedMintBuckets
    pacer: JiraPacer | SharedJiraPacer
    minters: dict[str, Minter]
    executor: CallExecutor

    def for_config(self, config: Config, environments: Iterable[str], *, clock: Clock,
                   observer: Observer, serve_run: bool = False) -> Tools:
        """Tools for a run whose config differs from the process's (a run serve started, its
        installation's token read sealed): its own minters and executor, the same session
        and budgets (mints and calls are paced together whichever run makes them).
        ``serve_run``: the run is serve's, so it may spend the quota kept for serve's runs."""
        pacer = self.pacer
        if serve_run and isinstance(pacer, SharedJiraPacer):
            pacer = pacer.for_serve()
        minters = _minters(config, environments, self.session, self.buckets, clock, observer)
        executor = _executor(config, self.session, minters, pacer, clock, observer)
        return Tools(self.session, self.buckets, pacer, minters, executor)

    async def settle(self) -> None:
        """The shared budgets' background writes, finished (their failure raised)."""
        if isinstance(self.buckets, SharedMintBuckets):
            await self.buckets.settle()
        if isinstance(self.pacer, SharedJiraPacer):
            await self.pacer.settle()


@asynccontextmanager
async def engine_tools(config: Config, environments: Iterable[str], *, concurrency: int,
                       store: BudgetStore | None, clock: Clock, observer: Observer,
                       serve_run: bool = False) -> AsyncIterator[Tools]:
    """``store``: the budgets every process on the journal shares; without one the budgets
    are this process's own (a benchmark's memory journal, a test), and no share of the
    quota is kept for serve's runs (there are none to share it with). ``serve_run``: the
    tools are a serve run's, which may spend that share."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2 + 8)
    async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": user_agent()},
                                     trace_configs=[last_check_trace()]) as session:
        buckets: MintBuckets | SharedMintBuckets
        pacer: JiraPacer | SharedJiraPacer
        if store is None:
            buckets = MintBuckets(clock=clock, observer=observer)
            pacer = JiraPacer(config.jira_budgets, clock=clock, observer=observer)
        else:
            buckets = SharedMintBuckets(store, clock=clock, observer=observer,
                                        answer_limit_s=min(UNANSWERED_MINT_S,
                                                           config.runner.request_timeout_s))
            pacer = SharedJiraPacer(config.jira_budgets, store, clock=clock, observer=observer,
                                    serve=serve_run)
        minters = _minters(config, environments, session, buckets, clock, observer)
        executor = _executor(config, session, minters, pacer, clock, observer)
        yield Tools(session, buckets, pacer, minters, executor)


def _minters(config: Config, environments: Iterable[str], session: aiohttp.ClientSession,
             buckets: MintBuckets | SharedMintBuckets, clock: Clock,
             observer: Observer) -> dict[str, Minter]:
    return {
        name: Minter.from_config(config, name, session=session, buckets=buckets,
                                 observer=observer, clock=clock)
        for name in sorted(set(environments))
    }


def _executor(config: Config, session: aiohttp.ClientSession, minters: dict[str, Minter],
              pacer: JiraPacer | SharedJiraPacer, clock: Clock,
              observer: Observer) -> CallExecutor:
    return CallExecutor(JiraClient(session, timeout_s=config.runner.request_timeout_s),
                        minters, pacer, config.retry_jira, observer, clock)
