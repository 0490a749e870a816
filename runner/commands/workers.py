"""What ``status`` adds on a PostgreSQL journal: the workers alive, and who holds which lanes.

    Workers (heartbeat within 2 leases):
      HOST    PID    HEARTBEAT  LANES  WORKER
      box-1   4242   0.8s ago   8      box-1-4242-1a2b3c4d

    Lanes of r-20261203-ab12cd: 8 held by box-1-4242-1a2b3c4d, 3 by box-2-77-9f8e7d6c; 120 open

A run that workers still work on is "running" whatever became of the process that started
it, so ``status`` does not call it interrupted when that process is gone.
"""

from __future__ import annotations

import functools
from typing import Any

from runner.cluster.settings import ClusterSettings
from runner.journal import pglanes
from runner.journal.postgres import PostgresJournal

STALE_LEASES = 2.0  # a worker whose heartbeat is older than this many leases is not listed


async def workers_json(journal: PostgresJournal) -> list[dict[str, Any]]:
    stale = STALE_LEASES * ClusterSettings().lease_s
    rows = await journal.execute(functools.partial(pglanes.live_workers, stale_s=stale))
    return [{"worker": wid, "host": host, "pid": pid, "heartbeat_age_s": round(age, 1),
             "lanes_held": held} for wid, host, pid, age, held in rows]


async def lanes_json(journal: PostgresJournal, run_id: str) -> dict[str, Any]:
    held = await journal.execute(functools.partial(pglanes.lanes_of, run_id=run_id))
    left, _ = await journal.execute(functools.partial(pglanes.lanes_left, run_id=run_id))
    return {"open": left, "held": {owner: n for owner, n in held}}


def workers_text(workers: list[dict[str, Any]]) -> str:
    if not workers:
        return "No workers alive on this journal.\n"
    rows = [["HOST", "PID", "HEARTBEAT", "LANES", "WORKER"]]
    rows += [[w["host"], str(w["pid"]), f"{w['heartbeat_age_s']:.1f}s ago",
              str(w["lanes_held"]), w["worker"]] for w in workers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["Workers (heartbeat within 2 leases):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines) + "\n"


def lanes_text(run_id: str, lanes: dict[str, Any]) -> str:
    held = ", ".join(f"{n} by {owner}" for owner, n in lanes["held"].items())
    return (f"Lanes of {run_id}: {lanes['open']} open"
            + (f", held {held}" if held else ", none held") + "\n")
