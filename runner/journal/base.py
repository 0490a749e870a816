"""The journal's interface and the values it hands out.

An *item* is one (row, action) pair of a run, named ``f"{row_key}#{action_index}"``. Items are
written when first touched, so an item the journal has never seen is ``pending``: a
million-row job puts nothing in the journal up front. A resume streams the source again and asks
``states()`` about the rows, a batch at a time.

States and the moves between them (``done`` is final: an item done is never sent again):

    (not recorded) / pending ── started ──┬── done
              │                   ▲  │    ├── failed ──── requeue ──> pending
              │                   │  │    ├── uncertain (a create whose outcome is unknown)
              │                   └──┘    ├── skipped (the user can't be impersonated)
              └── skipped / blocked / failed  └── blocked (the environment can't mint)

A ``Journal`` is implemented by ``SqliteJournal`` (one process per job, a file lock),
``PostgresJournal`` (one process starts a job, a session lock, on any host) and
``MemoryJournal`` (benchmarks). On PostgreSQL a run's work is shared by several processes and
hosts through leased lanes (``runner.cluster``, ``runner.journal.pglanes``): each item write of
a lane is then accepted only from the lane's holder under its fence (``PostgresJournal.join``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self


class ItemState(StrEnum):
    PENDING = "pending"
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    UNCERTAIN = "uncertain"


class RunState(StrEnum):
    RUNNING = "running"
    # Stopped by a signal or a crash; the next run of the same job resumes it.
    INTERRUPTED = "interrupted"
    # Every item reached a final state (some may have failed). The next run of the same job
    # takes it up again for rows added to the source since, and repeats none of its items.
    FINISHED = "finished"
    # Stopped by an error before its items were all handled (e.g. an environment blocked).
    FAILED = "failed"


# What `report` lists and `status` counts by reason.
PROBLEM_STATES: tuple[ItemState, ...] = (
    ItemState.FAILED,
    ItemState.SKIPPED,
    ItemState.BLOCKED,
    ItemState.UNCERTAIN,
)
# What `requeue` may put back in line. Uncertain items are not among them: they must be
# checked against Jira before anything is sent again, which the engine does on resume.
REQUEUEABLE_STATES: tuple[ItemState, ...] = (
    ItemState.FAILED,
    ItemState.SKIPPED,
    ItemState.BLOCKED,
)


def item_key(row_key: str, action_index: int) -> str:
    """The item's name: ``"{row_key}#{action_index}"``."""
    return f"{row_key}#{action_index}"


@dataclass(frozen=True)
class ItemRef:
    """Which item, and whose: what the engine knows about an item before it is journaled."""

    row_key: str
    action_index: int
    site: str
    account_id: str
    # The action's name (``comment.add``), for reports; the index is what identifies it.
    action: str = ""

    @property
    def key(self) -> str:
        return item_key(self.row_key, self.action_index)


@dataclass(frozen=True)
class ItemRecord:
    """An item as journaled."""

    run_id: str
    row_key: str
    action_index: int
    action: str
    state: ItemState
    # How many times the item was started, over every resume of the run.
    attempts: int
    # Short and shared by many items ("user deactivated", "HTTP 404"); counted by `status`.
    reason: str | None
    # The particulars of this item's last error (Jira's errorMessages, a request ID...).
    detail: str | None
    # What Jira returned that matters later: IDs and keys created.
    result: Mapping[str, Any] | None
    site: str
    account_id: str
    updated_at: float

    @property
    def key(self) -> str:
        return item_key(self.row_key, self.action_index)


@dataclass(frozen=True)
class RunRecord:
    """A run as journaled. ``counts`` holds the recorded items by state."""

    run_id: str
    job_name: str
    job_path: str
    job_fingerprint: str
    config_fingerprint: str
    # The job file's text when the run started, so a resume can say what changed.
    job_text: str = field(repr=False)
    started_at: float
    ended_at: float | None
    state: RunState
    # Items the job plans (rows x actions), once the engine has counted them.
    total_items: int | None
    # "pid 1234 on host" of the process that last ran it.
    holder: str
    counts: Mapping[ItemState, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Items not started yet: never touched, or put back in line."""
        requeued = self.counts.get(ItemState.PENDING, 0)
        if self.total_items is None:
            return requeued
        touched = sum(n for s, n in self.counts.items() if s is not ItemState.PENDING)
        return max(self.total_items - touched, 0)

    def by_state(self) -> dict[ItemState, int]:
        """Counts of every state, pending included (as far as the total is known)."""
        out = {state: self.counts.get(state, 0) for state in ItemState}
        out[ItemState.PENDING] = self.pending
        return out


@dataclass(frozen=True)
class RunHandle:
    """A run opened for work by this process (its lock is held until ``finish_run``)."""

    run: RunRecord
    # True when an earlier run was picked up again rather than created.
    resumed: bool
    # The config file changed since the run last ran (allowed; the engine may say so).
    config_changed: bool = False
    # When the run picked up had finished: that run as it was then (when, what it did). Only
    # rows it has no items for are left to do.
    extends: RunRecord | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id


@dataclass(frozen=True)
class ReasonCount:
    state: ItemState
    reason: str
    count: int


@dataclass(frozen=True)
class RunCounts:
    """One run's items counted by state, by site (site -> state -> n) and by reason."""

    run: RunRecord
    by_state: Mapping[ItemState, int]
    by_site: Mapping[str, Mapping[ItemState, int]]
    by_reason: Sequence[ReasonCount]


class Journal(Protocol):
    """The durable record of runs and their items.

    Every ``mark_*`` returns only once the change is durable, so the engine can send a request
    right after ``mark_started`` returns and start a user's next action right after
    ``mark_done``. Writes become durable in the order they were made: when one returns, every
    write made before it is durable too (``submit_done`` relies on it). No token may be passed
    in: reasons, details and results are redacted anyway (registered secrets, bearer values,
    JWTs, sensitive keys) before they are stored.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def open_run(
        self,
        job_name: str,
        job_path: str,
        job_fingerprint: str,
        config_fingerprint: str,
        job_text: str,
        *,
        fresh: bool = False,
    ) -> RunHandle:
        """Pick the job's latest run up again, else start a new one.

        An unfinished run is resumed; a finished one is extended (``RunHandle.extends``): its
        done items stay done, so running a finished job again repeats nothing and does only
        rows added since. ``fresh`` always starts a new run. Raises ``RunLockedError`` when
        another process is running this job, and ``JobChangedError`` when the latest run was
        started from a different job file (unless ``fresh``).
        """
        ...

    async def resume(self, run_id: str) -> RunHandle:
        """Open a run by its ID (``RunNotFoundError``, ``RunLockedError``)."""
        ...

    async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
        """The rows among ``row_keys`` this process may work on.

        With one process per run (SQLite) that is all of them; a journal shared by several
        processes grants each row to one of them under a lease.
        """
        ...

    async def set_total(self, run_id: str, total_items: int) -> None: ...

    async def mark_started(self, run_id: str, item: ItemRef) -> None:
        """Journal ``item`` as started (its ``attempts`` grow by one).

        Raises ``JournalError`` if the item is already done.
        """
        ...

    async def mark_done(
        self, run_id: str, item: ItemRef, result: Mapping[str, Any] | None = None
    ) -> None: ...

    def submit_done(
        self, run_id: str, item: ItemRef, result: Mapping[str, Any] | None = None
    ) -> Awaitable[object]:
        """Journal ``item`` as done without waiting; await what it returns for durability.

        The write is queued before this returns, so any write made after it (the same user's
        next ``mark_started``) becomes durable no earlier: once that one has returned, this
        ``done`` is durable too, and both shared one commit instead of costing one each.
        """
        ...

    async def mark_failed(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None: ...

    async def mark_skipped(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None: ...

    async def mark_blocked(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None: ...

    async def mark_uncertain(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None: ...

    async def states(self, run_id: str, row_keys: Sequence[str]) -> Mapping[str, ItemRecord]:
        """The recorded items of these rows, by item key; items absent are pending."""
        ...

    def records(
        self, run_id: str, states: Sequence[str] = PROBLEM_STATES
    ) -> AsyncIterator[ItemRecord]:
        """Every recorded item in one of ``states``, streamed a page at a time."""
        ...

    async def requeue(
        self, run_id: str, states: Sequence[str] = (ItemState.FAILED,)
    ) -> int:
        """Put items in ``states`` back in line (pending); returns how many.

        A finished run with items put back becomes ``interrupted``, so it is resumed.
        """
        ...

    async def finish_run(self, run_id: str, state: RunState | str) -> None:
        """Record how the run ended and release it."""
        ...

    async def get_run(self, run_id: str) -> RunRecord: ...

    async def latest_run(self, job_path: str) -> RunRecord | None:
        """The job's newest run (the one ``open_run`` would pick up), or None."""
        ...

    async def done_by_action(self, run_id: str) -> Mapping[int, int]:
        """The run's done items counted by action index (what ``fresh`` would send again)."""
        ...

    async def counts(self, run_id: str) -> RunCounts: ...

    async def runs(self, limit: int = 20) -> Sequence[RunRecord]:
        """The latest runs, newest first."""
        ...

    async def close(self) -> None: ...


def as_future(done: Awaitable[object]) -> asyncio.Future[object]:
    """What ``submit_done`` returned, as the future the journal settles at the commit. A
    coroutine would do nothing until awaited, so it is refused rather than spawned as a loose
    task."""
    if not isinstance(done, asyncio.Future):
        raise TypeError(f"submit_done returned {type(done).__name__}, not a future")
    return done
