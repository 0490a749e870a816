"""A run's rows into the journal, once, streamed: so no worker needs the job's data file.

The source is read a chunk at a time in a thread (a million rows hold no more memory than a
chunk), each chunk one statement that adds the rows the run does not have yet and opens their
lanes; a lane can be claimed as soon as its first chunk is in. A finished run taken up again
(rows added to the source since) is loaded again: rows it has are skipped, lanes with new rows
open again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from itertools import islice

from runner.job.jobfile import Job
from runner.job.sources import Row
from runner.journal import pglanes
from runner.journal.postgres import PostgresJournal

CHUNK = 1000


async def load_run(journal: PostgresJournal, run_id: str, job: Job, *, weight: float,
                   placed: str | None = None) -> int:
    """Load the job's rows into ``run_id``; returns how many rows the source has. ``placed``:
    a template's run, the site it was placed on (``runner.cluster.placed``)."""
    await journal.write(functools.partial(pglanes.set_lanes, run_id=run_id,
                                          columns=job.source.columns, placed=placed))
    weights = {s: weight * job.site_weights.get(s, 1.0) for s in job.sites}
    await journal.write(functools.partial(pglanes.add_flows, run_id=run_id, weights=weights))
    rows = iter(job.source.rows())
    seen = 0
    while chunk := await asyncio.to_thread(_take, rows):
        seen += len(chunk)
        batch = [(r.key, r.index, r.site, r.account_id, r.line, r.fields) for r in chunk]
        await journal.write(functools.partial(pglanes.load_rows, run_id=run_id, rows=batch))
    await journal.write(functools.partial(pglanes.set_loaded, run_id=run_id))
    return seen


def _take(rows: Iterator[Row]) -> list[Row]:
    return list(islice(rows, CHUNK))
