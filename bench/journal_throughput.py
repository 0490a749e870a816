"""Journal throughput: ``mark_started`` + ``mark_done`` pairs per second, SQLite versus memory.

    .venv/bin/python bench/journal_throughput.py [--items 20000] [--workers 16]

Workers run items the way the engine does (started, then done, each awaited before the next
step), with no Jira call between, so the journal is the only cost. Printed for SQLite with
``synchronous=FULL`` (the default: durable against power loss), ``NORMAL`` (durable against a
process crash), and the in-memory journal; with the group-commit factor (writes per commit).
The full comparison against the sandbox comes with the engine (issue 4's benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from runner.journal import ItemRef, Journal, MemoryJournal, SqliteJournal
from runner.journal.sqlite import Synchronous


async def _drive(journal: Journal, job: Path, items: int, workers: int) -> float:
    run = (await journal.open_run("bench", str(job), "j", "c", "")).run_id
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(items):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            ref = ItemRef(f"row-{n:08d}", 0, "acme", f"5ca1ab1e{n:016x}", "comment.add")
            await journal.mark_started(run, ref)
            await journal.mark_done(run, ref, {"id": str(n)})

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    await journal.finish_run(run, "finished")
    return items / elapsed


async def main(items: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "job.toml"
        rows: list[tuple[str, float, str]] = []
        modes: tuple[Synchronous, ...] = ("FULL", "NORMAL")
        for sync in modes:
            sqlite = SqliteJournal(Path(folder) / f"{sync}.db", synchronous=sync)
            async with sqlite:
                rate = await _drive(sqlite, job, items, workers)
                commits, writes = sqlite.batches
            rows.append((f"sqlite synchronous={sync}", rate, f"{writes / max(commits, 1):.1f}"))
        async with MemoryJournal() as memory:
            rows.append(("memory", await _drive(memory, job, items, workers), "-"))
    base = rows[-1][1]
    print(f"{items} items, {workers} workers: mark_started + mark_done per item")
    print(f"{'journal':<28}{'items/s':>12}{'vs memory':>12}{'writes/commit':>16}")
    for name, rate, factor in rows:
        print(f"{name:<28}{rate:>12,.0f}{rate / base:>12.3f}{factor:>16}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.workers))
