"""What one take from the shared budgets costs: a round trip to the budget store, measured.

    .venv/bin/python bench/budget_take.py [--takes 2000] [--pg postgresql://...]

One process, one task, no contention: each take is a whole program in its own transaction,
as a request's permit runs it (pauses read, burst key, tenant quota looked for, app quota) or a
mint's (pause read, the bucket's arrival time and window guard, its log). Budgets are huge so
every take is granted. SQLite: a fresh file in a temporary folder (WAL, as the journal's).
PostgreSQL (``--pg``, a database the bench may create tables in): over its URL.
Printed: mean and 99th percentile per take, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from runner.budgets.store import connect
from runner.budgets.store.calls import BurstTerms, CallKeys, QuotaTerms, call_take
from runner.budgets.store.mints import mint_take

BURST = BurstTerms(rate=1e9, capacity_s=1e3, regrow_per_s=1.0, min_rate=1.0, cut_hold_s=1.0)
QUOTA = QuotaTerms(points=10**12, window_s=3600.0, margin=0.0, burst=1.0)
CALL = CallKeys(("burst:acme:GET /x", "quota:global", "quota:acme:tenant", "site:acme"),
                "burst:acme:GET /x", "quota:global", "quota:acme:tenant")
WRITE = CallKeys(CALL.held, "burst:acme:PUT /y", CALL.app_quota, CALL.tenant_quota,
                 "issue:acme:MIG-1", "issuerate:acme", 1e-9)


async def measure(location: str | Path, takes: int) -> dict[str, tuple[float, float]]:
    store = await connect(location)
    out: dict[str, tuple[float, float]] = {}
    try:
        for name, make in (
            ("call", lambda: call_take(CALL, 1.0, BURST, QUOTA)),
            ("write", lambda: call_take(WRITE, 1.0, BURST, QUOTA)),
            ("mint", lambda: mint_take("mint:bench", 1e-9, 0.0, 10**9, 1e-9, 1.0)),
        ):
            times = []
            for _ in range(takes):
                start = time.perf_counter()
                await store.run(make())
                times.append(time.perf_counter() - start)
            times.sort()
            out[name] = (statistics.fmean(times) * 1e3, times[int(0.99 * len(times))] * 1e3)
    finally:
        await store.close()
    return out


async def main(takes: int, pg: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {"SQLite": await measure(Path(tmp) / "journal.db", takes)}
    if pg:
        results["PostgreSQL"] = await measure(pg, takes)
    print(f"one take from the shared budgets, {takes} each, ms (mean / p99)")
    for backend, figures in results.items():
        cells = "  ".join(f"{name} {mean:.3f} / {p99:.3f}" for name, (mean, p99) in
                          figures.items())
        print(f"  {backend:<11} {cells}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=2000)
    parser.add_argument("--pg", help="a PostgreSQL URL to measure too")
    args = parser.parse_args()
    asyncio.run(main(args.takes, args.pg))
