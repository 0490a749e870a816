"""Items per second with every budget off: the engine on the SQLite journal versus in memory.

    .venv/bin/python bench/throughput.py [--rows 5000] [--users 200] [--issues 100]
                                         [--rounds 5] [--concurrency 16[,32,...]]
                                         [--latency-ms 0] [--no-pin]

One job (each row: ``comment.add`` then ``issue.property.set``, as the row's user), run to the
end by ``runner.engine.Engine`` constructed directly, once on a fresh ``SqliteJournal`` (WAL,
``synchronous=FULL``: what `forge-runner run` uses) and once on a ``MemoryJournal``, alternating,
``rounds`` times each after a warm-up, so that only the journal differs and drift on a shared
machine hits both alike. Jira is the sandbox served by a separate process (`forge-runner
sandbox`, Jira limits off, mints unlimited); the runner's own budgets are set out of reach.

Cores (Linux, two or more allowed): the engine runs alone on the first allowed CPU, in both
journals' rounds; the sandbox and each round's journal committer share the second. Left to the
kernel, on a two-core machine three busy processes (engine ~90% of a core, sandbox ~65%,
committer ~20%) land now beside, now on top of the engine, which is the bottleneck, and a
placement holds for a whole run: the same command then reads anywhere from 0.67 to 0.98. Jira's
CPU is not the runner's; the sandbox standing in for it gets the core the engine does not use.
``--no-pin`` measures the kernel's placement instead.

Printed: items per second of every round, and per concurrency the median of each journal and
their ratio (SQLite / memory). Target (issue 4): at least 0.8; the exit code is 1 when it is
missed at any concurrency measured. ``--latency-ms`` makes the sandbox answer each Jira request
that much later, as a remote Jira does; by default it answers at once over loopback, where the
journal's few milliseconds per durable write weigh the most.
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
from dataclasses import dataclass, replace
from pathlib import Path

# Run as `python bench/throughput.py`: this folder is on sys.path, memory.py beside it.
from memory import Sandbox, runner_toml, write_csv

from runner.config import Config, load_config
from runner.engine import Engine
from runner.job import Job, load_job
from runner.journal import ItemState, Journal, MemoryJournal, SqliteJournal
from runner.logs import configure_logging
from runner.sandbox.testing import MIGRATION_ACTIONS

TARGET = 0.8

@dataclass(frozen=True)
class Round:
    journal: str
    items: int
    wall_s: float

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


async def one_round(name: str, journal: Journal, config: Config, job: Job, total: int,
                    committer_cpu: int | None = None) -> Round:
    async with journal:
        handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                        config.fingerprint, job.text, fresh=True)
        pid = journal.committer_pid if isinstance(journal, SqliteJournal) else None
        if committer_cpu is not None and pid is not None:
            os.sched_setaffinity(pid, {committer_cpu})
        await journal.set_total(handle.run_id, total)
        start = time.perf_counter()
        result = await Engine(config, job, journal).run(handle)
        wall = time.perf_counter() - start
    done = result.counts.get(ItemState.DONE, 0)
    if done != total:
        raise SystemExit(f"{name}: {done} of {total} items done ({dict(result.counts)})")
    return Round(name, total, wall)


async def bench(folder: Path, args: argparse.Namespace) -> int:
    write_csv(folder / "rows.csv", args.rows, args.users, args.issues)
    (folder / "job.toml").write_text(
        f'name = "throughput"\nsite = "acme"\nrow_key = "legacy_id"\n\n'
        f'[source]\ncsv = "rows.csv"\n\n{MIGRATION_ACTIONS}')
    cores = _cores() if args.pin else None
    sandbox = Sandbox(folder, args.issues, args.latency_ms, {cores[1]} if cores else None)
    if cores:
        os.sched_setaffinity(0, {cores[0]})
    ratios: dict[int, tuple[float, float]] = {}
    try:
        (folder / "config.toml").write_text(runner_toml(sandbox.url, "unused.db", 16))
        loaded = load_config(folder / "config.toml")
        job = load_job(folder / "job.toml", loaded)
        total = args.rows * len(job.actions)
        print(f"throughput: {args.rows:,} rows x {len(job.actions)} actions = {total:,} items, "
              f"{args.users:,} users, {args.issues:,} issues, Jira latency "
              f"{args.latency_ms:g} ms; {args.rounds} rounds per journal", flush=True)
        print("cores: " + (f"engine alone on CPU {cores[0]}, sandbox and committer on CPU "
                           f"{cores[1]}" if cores else "as the kernel places them (unpinned)"),
              flush=True)
        for concurrency in args.concurrency:
            config = replace(loaded, runner=replace(loaded.runner, concurrency=concurrency))
            await one_round("warm-up", MemoryJournal(), config, job, total)
            rounds: list[Round] = []
            for n in range(args.rounds):
                for name in ("memory", "sqlite") if n % 2 == 0 else ("sqlite", "memory"):
                    journal: Journal = (MemoryJournal() if name == "memory" else
                                        SqliteJournal(folder / f"round-{concurrency}-{n}.db"))
                    rounds.append(await one_round(name, journal, config, job, total,
                                                  cores[1] if cores else None))
                    print(f"  concurrency {concurrency:>3} round {n + 1} {name:<7}"
                          f"{rounds[-1].rate:>8,.0f} items/s ({rounds[-1].wall_s:.1f} s)",
                          flush=True)
            ratios[concurrency] = (
                statistics.median(r.rate for r in rounds if r.journal == "memory"),
                statistics.median(r.rate for r in rounds if r.journal == "sqlite"),
            )
    finally:
        sandbox.stop()
    print()
    print(f"{'concurrency':>11}{'memory items/s':>16}{'sqlite items/s':>16}{'ratio':>8}  "
          f"(medians; target >= {TARGET})")
    met = True
    for concurrency, (memory, sqlite) in ratios.items():
        ratio = sqlite / memory
        met = met and ratio >= TARGET
        print(f"{concurrency:>11}{memory:>16,.0f}{sqlite:>16,.0f}{ratio:>8.2f}  "
              + ("met" if ratio >= TARGET else "MISSED"))
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows (5,000; 2 items each)")
    parser.add_argument("--users", type=int, default=200, help="distinct users (200)")
    parser.add_argument("--issues", type=int, default=100, help="distinct issues (100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per journal (5)")
    parser.add_argument("--concurrency", type=_numbers, default=[16], metavar="N[,N...]",
                        help="workers; a list measures each (16, the default config's)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="latency the sandbox adds to every Jira request (0)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave the engine, the committer and the sandbox where the kernel "
                             "puts them")
    args = parser.parse_args()
    # A line per mint would drown the table: warnings and worse only.
    configure_logging(format="plain", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="forge-runner-throughput-") as folder:
        return asyncio.run(bench(Path(folder), args))


def _cores() -> tuple[int, int] | None:
    """The engine's CPU and the one the sandbox and the committer share, where they can be set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
