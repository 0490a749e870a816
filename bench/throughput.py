"""Items per second with every budget off: the engine on the SQLite (and PostgreSQL) journal
versus in memory.

    .venv/bin/python bench/throughput.py [--latency-ms 0,100] [--rows 5000] [--wan-rows 1000]
                                         [--users 200] [--issues 100] [--rounds 5]
                                         [--concurrency 16[,32,...]] [--pin]
                                         [--postgres ADMIN_URL]

``--postgres`` adds the PostgreSQL journal, in a database made for the bench on that server
(and dropped after), twice: ``postgres``, the same engine on it (what the journal itself costs;
its target: at a latency, at least 0.9 of memory), and ``lanes``, run as `forge-runner run`
runs it there: loaded into the journal and worked by lanes (``runner.cluster.ClusterEngine``;
reported beside it, a lane's claim, read and finish and the run's tail of whole lanes added).

One job (each row: ``comment.add`` then ``issue.property.set``, as the row's user), run to the
end by ``runner.engine.Engine`` constructed directly, on each journal in turn: a fresh
``SqliteJournal`` (WAL, ``synchronous=FULL``: what `forge-runner run` uses) and a
``MemoryJournal``, ``rounds`` times each after a warm-up, in an order that rotates every round,
so that only the journal differs and drift on a shared machine hits all alike. Jira is the
sandbox served by a separate process (`forge-runner sandbox`, Jira limits off, mints
unlimited); the runner's own budgets are set out of reach.

Two regimes, one sandbox each: Jira 100 ms away (a WAN round trip; ``--wan-rows`` rows, since
16 workers then do at most 160 items/s), which is where runs live (Jira's default quota allows
an app ~18 items/s, its largest tier ~140/s), and Jira on loopback answering at once, where the
journal's cost per durable write weighs the most. Targets: at 100 ms SQLite at least 0.95 of
memory; at 0 ms at least 1,000 SQLite items/s. The exit code is 1 when one is missed.

``--pin`` (Linux, two CPUs or more) puts the engine alone on the first allowed CPU and the
sandbox on the second; by default the kernel places every process.

Printed: items per second of every round (with the SQLite writer's writes per commit, the
group-commit factor), and per latency and concurrency the median of each journal and its ratio
to memory's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

# Run as `python bench/throughput.py`: this folder is on sys.path, memory.py beside it.
from memory import Sandbox, bench_database, runner_toml, write_csv

from runner.cluster.runengine import ClusterEngine
from runner.config.configfile import Config, load_config
from runner.engine.engine import Engine
from runner.job.jobfile import Job, load_job
from runner.journal import ItemState, Journal, MemoryJournal, PostgresJournal, SqliteJournal
from runner.logs.setup import configure_logging
from runner.sandbox.testing import MIGRATION_ACTIONS

WAN_RATIO = 0.95  # SQLite / memory with Jira 100 ms (any latency > 0) away
PG_WAN_RATIO = 0.9  # PostgreSQL / memory, likewise
LOOPBACK_RATE = 1000.0  # SQLite items/s with Jira on loopback

# The journals compared: name -> a fresh journal on a file of the folder.
JOURNALS: dict[str, Callable[[Path], Journal]] = {
    "memory": lambda _: MemoryJournal(),
    "sqlite": SqliteJournal,
}
BASE = "memory"
KEPT = "sqlite"  # the design the targets are for


class LanesJournal(PostgresJournal):
    """The PostgreSQL journal, its run worked by lanes (the round's name says which)."""


@dataclass(frozen=True)
class Round:
    journal: str
    items: int
    wall_s: float
    # The SQLite writer's group-commit factor (writes per commit); None in memory.
    per_commit: float | None = None

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


async def one_round(name: str, journal: Journal, config: Config, job: Job, total: int) -> Round:
    async with journal:
        handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                        config.fingerprint, job.text, fresh=True)
        await journal.set_total(handle.run_id, total)
        start = time.perf_counter()
        # "lanes": as `forge-runner run` does on PostgreSQL, the run loaded and worked by lanes.
        engine = (ClusterEngine(config, job, journal) if isinstance(journal, LanesJournal)
                  else Engine(config, job, journal))
        result = await engine.run(handle)
        wall = time.perf_counter() - start
        per_commit = None
        if isinstance(journal, SqliteJournal | PostgresJournal):
            commits, writes = journal.batches
            per_commit = writes / max(commits, 1)
    done = result.counts.get(ItemState.DONE, 0)
    if done != total:
        raise SystemExit(f"{name}: {done} of {total} items done ({dict(result.counts)})")
    return Round(name, total, wall, per_commit)


async def one_latency(folder: Path, args: argparse.Namespace, latency_ms: float,
                      cores: tuple[int, int] | None) -> dict[int, dict[str, float]]:
    """Median items/s per concurrency and journal, with the sandbox ``latency_ms`` away."""
    rows = args.rows if latency_ms == 0 else args.wan_rows
    here = folder / f"latency-{latency_ms:g}"
    here.mkdir()
    write_csv(here / "rows.csv", rows, args.users, args.issues)
    (here / "job.toml").write_text(
        f'name = "throughput"\nsite = "acme"\nrow_key = "legacy_id"\n\n'
        f'[source]\ncsv = "rows.csv"\n\n{MIGRATION_ACTIONS}')
    sandbox = Sandbox(here, args.issues, latency_ms, {cores[1]} if cores else None)
    medians: dict[int, dict[str, float]] = {}
    try:
        (here / "config.toml").write_text(runner_toml(sandbox.url, "unused.db", 16))
        loaded = load_config(here / "config.toml")
        job = load_job(here / "job.toml", loaded)
        total = rows * len(job.actions)
        print(f"Jira latency {latency_ms:g} ms: {rows:,} rows x {len(job.actions)} actions = "
              f"{total:,} items, {args.users:,} users, {args.issues:,} issues; {args.rounds} "
              f"rounds per journal", flush=True)
        names = list(JOURNALS)
        for concurrency in args.concurrency:
            config = replace(loaded, runner=replace(loaded.runner, concurrency=concurrency))
            await one_round("warm-up", MemoryJournal(), config, job, total)
            rounds: list[Round] = []
            for n in range(args.rounds):
                shift = n % len(names)
                for name in names[shift:] + names[:shift]:
                    journal = JOURNALS[name](here / f"round-{concurrency}-{n}-{name}.db")
                    rounds.append(await one_round(name, journal, config, job, total))
                    got = rounds[-1]
                    factor = "" if got.per_commit is None else (
                        f", {got.per_commit:.1f} writes per commit")
                    print(f"  concurrency {concurrency:>3} round {n + 1} {name:<10}"
                          f"{got.rate:>8,.0f} items/s ({got.wall_s:.1f} s{factor})", flush=True)
            medians[concurrency] = {
                name: statistics.median(r.rate for r in rounds if r.journal == name)
                for name in names
            }
    finally:
        sandbox.stop()
    return medians


async def bench(folder: Path, args: argparse.Namespace) -> int:
    cores = _cores() if args.pin else None
    if cores:
        os.sched_setaffinity(0, {cores[0]})
    print("cores: " + (f"engine alone on CPU {cores[0]}, sandbox on CPU {cores[1]}" if cores
                       else "as the kernel places them"), flush=True)
    results = {latency: await one_latency(folder, args, latency, cores)
               for latency in args.latency_ms}
    others = [name for name in JOURNALS if name != BASE]
    print()
    print(f"{'latency':>8}{'workers':>8}{BASE + ' items/s':>16}"
          + "".join(f"{name + ' items/s':>19}{'ratio':>7}" for name in others)
          + f"  (medians; targets: {KEPT} >= {WAN_RATIO} of {BASE} at a latency, "
            f">= {LOOPBACK_RATE:,.0f} items/s at 0 ms; postgres >= {PG_WAN_RATIO} of {BASE} "
            "at a latency)")
    met = True
    for latency, by_concurrency in results.items():
        for concurrency, rates in by_concurrency.items():
            base = rates[BASE]
            ok = (rates[KEPT] / base >= WAN_RATIO if latency > 0
                  else rates[KEPT] >= LOOPBACK_RATE)
            if "postgres" in rates and latency > 0:
                ok = ok and rates["postgres"] / base >= PG_WAN_RATIO
            met = met and ok
            print(f"{latency:>6g}ms{concurrency:>8}{base:>16,.0f}"
                  + "".join(f"{rates[name]:>19,.0f}{rates[name] / base:>7.2f}" for name in others)
                  + ("  met" if ok else "  MISSED"))
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=_floats, default=[0.0, 100.0], metavar="MS[,MS...]",
                        help="latency the sandbox adds to every Jira request; one sandbox "
                             "each (0,100)")
    parser.add_argument("--rows", type=int, default=5000,
                        help="rows at 0 ms (5,000; 2 items each)")
    parser.add_argument("--wan-rows", type=int, default=1000,
                        help="rows at a latency above 0 (1,000)")
    parser.add_argument("--users", type=int, default=200, help="distinct users (200)")
    parser.add_argument("--issues", type=int, default=100, help="distinct issues (100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per journal (5)")
    parser.add_argument("--concurrency", type=_numbers, default=[16], metavar="N[,N...]",
                        help="workers; a list measures each (16, the default config's)")
    parser.add_argument("--pin", action="store_true",
                        help="engine alone on the first allowed CPU, the sandbox on the second")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="also the PostgreSQL journal, in a database made on this server")
    args = parser.parse_args()
    # A line per mint would drown the table: warnings and worse only.
    configure_logging(format="plain", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="forge-runner-throughput-") as folder:
        if args.postgres is None:
            return asyncio.run(bench(Path(folder), args))
        with bench_database(args.postgres) as url:
            JOURNALS["postgres"] = lambda _: PostgresJournal(url)
            JOURNALS["lanes"] = lambda _: LanesJournal(url)
            return asyncio.run(bench(Path(folder), args))


def _cores() -> tuple[int, int] | None:
    """The engine's CPU and the sandbox's, where they can be set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
