"""Peak memory of `forge-runner export` on a run of 1,000,000 rows versus 100,000.

    .venv/bin/python bench/export_memory.py [--rows 1000000] [--small 100000] [--keep DIR]

For each size: a CSV source (``bench/memory.py``'s rows) and a journal holding a finished run of
a two-action job over it, every item done (a comment with its ``id`` and ``self``, then an
issue property), written straight into the journal's tables (running the job would take
hours; export reads only the journal and the source). Then, as child processes whose peak
resident memory ``os.wait4`` reports (the bench's own memory does not count), output thrown
away:

- ``export RUN --field legacy_id --field issue`` (CSV): the source streamed and joined with the
  journal a chunk of rows at a time;
- ``export RUN --format jsonl``: the journal alone, paged.

Targets (design principle 7, issue 13): each peak on ``rows`` within 20% of its peak on
``small``, and under 200 MB. The exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import LIMIT_MB, WITHIN, runner_toml, write_csv

from runner.journal import RunState, SqliteJournal
from runner.sandbox.testing import MIGRATION_ACTIONS

BASE = "https://api.atlassian.com/ex/jira/6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b/rest/api/3"


async def _open_run(journal: Path, job: Path) -> str:
    async with SqliteJournal(journal) as j:
        handle = await j.open_run(job.stem, str(job), "bench", "bench", job.read_text())
        await j.set_total(handle.run_id, 0)
        await j.finish_run(handle.run_id, RunState.FINISHED)
        return handle.run_id


def fill_journal(journal: Path, job: Path, rows: int, users: int) -> str:
    """A finished run of ``job`` with both actions of every row done."""
    run_id = asyncio.run(_open_run(journal, job))
    conn = sqlite3.connect(journal)
    now = time.time()

    def items():  # type: ignore[no-untyped-def]
        for n in range(rows):
            key, account = f"LEG-{n:08d}", f"5ca1ab1e{n % users:016x}"
            comment = str(10_000 + n)
            result = json.dumps({"id": comment, "self": f"{BASE}/issue/{n}/comment/{comment}"})
            yield (run_id, key, 0, "comment.add", "done", 1, None, None, result, "acme",
                   account, now)
            yield (run_id, key, 1, "issue.property.set", "done", 1, None, None, None, "acme",
                   account, now)

    with conn:
        conn.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", items())
        conn.execute("UPDATE runs SET total_items = ? WHERE run_id = ?", (2 * rows, run_id))
    conn.close()
    return run_id


def measure(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """Peak RSS (MB), wall time (s) and exit code of ``argv``, its output thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    if code != 0 or err:
        print(f"  {' '.join(argv[3:])} exited {code}: {err[-2000:]}", flush=True)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KB on Linux
    return usage.ru_maxrss * scale / 1e6, time.perf_counter() - start, code


def bench(args: argparse.Namespace, folder: Path) -> int:
    print(f"export memory: {args.small:,} and {args.rows:,} rows (2 done items each)", flush=True)
    (folder / "config.toml").write_text(runner_toml("http://127.0.0.1:9", "journal.db", 16))
    (folder / "system-token").write_text("unused\n")
    commands = {
        "csv --field legacy_id --field issue": ["--field", "legacy_id", "--field", "issue"],
        "jsonl (journal alone)": ["--format", "jsonl"],
    }
    peaks: dict[str, list[float]] = {name: [] for name in commands}
    failed = False
    for rows in (args.small, args.rows):
        for leftover in folder.glob("journal.db*"):
            if leftover.is_file():
                leftover.unlink()
        data = folder / f"rows-{rows}.csv"
        write_csv(data, rows, args.users, args.issues)
        job = folder / f"job-{rows}.toml"
        job.write_text(f'name = "export-{rows}"\nsite = "acme"\nrow_key = "legacy_id"\n\n'
                       f'[source]\ncsv = "{data.name}"\n\n{MIGRATION_ACTIONS}')
        start = time.perf_counter()
        run_id = fill_journal(folder / "journal.db", job, rows, args.users)
        print(f"  journal of {rows:,} rows written in {time.perf_counter() - start:.0f} s",
              flush=True)
        for name, extra in commands.items():
            argv = [sys.executable, "-m", "runner", "export", run_id, "--config", "config.toml",
                    *extra]
            peak, wall, code = measure(argv, folder)
            failed |= code != 0
            peaks[name].append(peak)
            print(f"  {name:<38} {rows:>10,} rows: {peak:7.1f} MB in {wall:6.1f} s "
                  f"({2 * rows / wall:,.0f} items/s read)", flush=True)
    print("peak at the large size / peak at the small size (target <= "
          f"{1 + WITHIN:.2f}, each under {LIMIT_MB:.0f} MB):")
    for name, (small, large) in peaks.items():
        ok = large <= small * (1 + WITHIN) and large <= LIMIT_MB
        failed |= not ok
        print(f"  {name:<38} {large / small:5.2f}  {'met' if ok else 'MISSED'}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="the large run (1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="the small run (100,000)")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users (10,000)")
    parser.add_argument("--issues", type=int, default=1_000, help="distinct issues (1,000)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="forge-runner-export-") as folder:
        return bench(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
