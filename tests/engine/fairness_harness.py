"""Set-up shared by the end-to-end fairness and budget tests (this module holds no tests).

A job written to a folder (CSV rows, any actions, one or two sites, optional weights), the
engine run in-process against a served sandbox with a real SQLite journal, and an observer that
keeps every event the run reports with the wall time it came at (the sandbox's clock is the same
wall clock, so the two timelines line up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config.configfile import Config
from runner.engine.engine import Engine, RunResult
from runner.engine.shutdown import Shutdown
from runner.events import Event as RunnerEvent
from runner.job.jobfile import Job
from runner.journal import SqliteJournal

# The retry policy for Jira calls, short: two attempts a fraction of a second apart.
SHORT_JIRA_RETRY = """
[retry.jira]
attempts = 2
wait_initial_s = {wait}
wait_max_s = {wait}
wait_jitter_s = 0.01
deadline_s = 120.0
"""


@dataclass(frozen=True)
class Event:
    at: float
    name: str
    fields: Mapping[str, Any]


@dataclass
class Events:
    """An observer keeping every event, and calling ``hook`` on each as it comes."""

    log: list[Event] = field(default_factory=list)
    hook: Callable[[Event], None] | None = None

    def event(self, ev: RunnerEvent, /) -> None:
        event = Event(time.time(), ev.name, ev.fields())
        self.log.append(event)
        if self.hook is not None:
            self.hook(event)

    def named(self, name: str, **match: Any) -> list[Event]:
        """The events called ``name`` whose fields include ``match``, in order."""
        return [e for e in self.log
                if e.name == name and all(e.fields.get(k) == v for k, v in match.items())]

    def ended(self) -> list[Event]:
        """Every item's end (done, failed, ...), in order."""
        return [e for e in self.log if e.name.startswith("item.")]


def write_job(
    folder: Path,
    rows: Sequence[Mapping[str, str]],
    actions: str,
    *,
    sites: Sequence[str] = ("acme",),
    weights: Mapping[str, float] | None = None,
    row_key: str | None = None,
) -> Path:
    """A job in ``folder`` over ``rows`` (CSV, columns from the first row) doing ``actions``."""
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    head = 'name = "e2e"\n'
    head += f'site = "{sites[0]}"\n' if len(sites) == 1 else f"sites = {list(sites)!r}\n"
    if row_key is not None:
        head += f'row_key = "{row_key}"\n'
    head += '[source]\ncsv = "rows.csv"\n'
    if weights:
        head += "[weights]\n" + "".join(f"{s} = {w}\n" for s, w in weights.items())
    job = folder / "job.toml"
    job.write_text(head.replace("'", '"') + actions)
    return job


async def run_engine(
    folder: Path, config: Config, job: Job, observer: Events, shutdown: Shutdown | None = None
) -> RunResult:
    """Run ``job`` to its end with a fresh SQLite journal in ``folder``."""
    async with SqliteJournal(folder / "journal.db") as journal:
        handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                        config.fingerprint, job.text)
        engine = Engine(config, job, journal, observer=observer, shutdown=shutdown)
        return await engine.run(handle)
