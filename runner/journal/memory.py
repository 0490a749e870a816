"""A journal in memory: the same interface and rules as ``SqliteJournal``, nothing durable.

For benchmarks (what does durability cost?) and for dry runs. A run lives as long as the
object; the lock is per journal object, so two opens of one job on the same object collide.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace

from runner.errors import JournalError, RunLockedError, RunNotFoundError
from runner.journal.base import (
    PROBLEM_STATES,
    ItemRecord,
    ItemRef,
    ItemState,
    ReasonCount,
    RunCounts,
    RunHandle,
    RunRecord,
    RunState,
)
from runner.journal.marks import ItemMarks
from runner.journal.rules import (
    MAX_DETAIL_CHARS,
    MAX_REASON_CHARS,
    check_move,
    clean_text,
    job_identity,
    load_result,
    new_run_id,
    parse_states,
    requeueable,
    resumes,
    this_holder,
)


class MemoryJournal(ItemMarks):
    """``async with MemoryJournal() as journal:`` (see ``Journal`` for the methods)."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._runs: dict[str, RunRecord] = {}
        self._order: list[str] = []  # run IDs in creation order
        # run -> row key -> action index -> record: `states` looks rows up directly.
        self._items: dict[str, dict[str, dict[int, ItemRecord]]] = {}
        self._counts: dict[str, Counter[ItemState]] = {}
        self._held: dict[str, str] = {}  # run ID -> job identity
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._held.clear()
        self._open = False

    # -- runs ---------------------------------------------------------------------------------

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
        ident = job_identity(job_path)
        latest = self._latest(ident)
        self._lock(ident, latest)
        if latest is not None and resumes(
            latest, job_path=ident, job_fingerprint=job_fingerprint, job_text=job_text,
            fresh=fresh,
        ):
            changed = latest.config_fingerprint != config_fingerprint
            extends = (self._with_counts(latest.run_id)
                       if latest.state is RunState.FINISHED else None)
            self._set_running(latest.run_id, config_fingerprint=config_fingerprint)
            self._held[latest.run_id] = ident
            return RunHandle(self._with_counts(latest.run_id), True, changed, extends)
        now = self._clock()
        run_id = new_run_id(now)
        while run_id in self._runs:
            run_id = new_run_id(now)
        self._runs[run_id] = RunRecord(
            run_id=run_id,
            job_name=job_name,
            job_path=ident,
            job_fingerprint=job_fingerprint,
            config_fingerprint=config_fingerprint,
            job_text=job_text,
            started_at=now,
            ended_at=None,
            state=RunState.RUNNING,
            total_items=None,
            holder=this_holder(),
        )
        self._order.append(run_id)
        self._items[run_id] = {}
        self._counts[run_id] = Counter()
        self._held[run_id] = ident
        return RunHandle(self._with_counts(run_id), False)

    async def resume(self, run_id: str) -> RunHandle:
        run = self._get(run_id)
        self._lock(run.job_path, run)
        self._set_running(run_id, config_fingerprint=run.config_fingerprint)
        self._held[run_id] = run.job_path
        return RunHandle(self._with_counts(run_id), True)

    async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
        self._check_held(run_id)
        return list(row_keys)

    async def set_total(self, run_id: str, total_items: int) -> None:
        self._check_held(run_id)
        self._runs[run_id] = replace(self._runs[run_id], total_items=int(total_items))

    async def finish_run(self, run_id: str, state: RunState | str) -> None:
        final = RunState(state)
        self._check_held(run_id)
        self._runs[run_id] = replace(self._runs[run_id], state=final, ended_at=self._clock())
        del self._held[run_id]

    async def requeue(self, run_id: str, states: Sequence[str] = (ItemState.FAILED,)) -> int:
        wanted = requeueable(states)
        run = self._get(run_id)
        if run_id not in self._held:
            self._lock(run.job_path, run)
        moved = 0
        now = self._clock()
        for actions in self._items[run_id].values():
            for index, record in actions.items():
                if record.state in wanted:
                    self._count(run_id, record.state, ItemState.PENDING)
                    actions[index] = replace(
                        record, state=ItemState.PENDING, reason=None, detail=None, updated_at=now
                    )
                    moved += 1
        if moved and run.state is RunState.FINISHED:
            self._runs[run_id] = replace(run, state=RunState.INTERRUPTED)
        return moved

    # -- items --------------------------------------------------------------------------------

    def _submit(
        self,
        run_id: str,
        item: ItemRef,
        state: ItemState,
        reason: str | None = None,
        detail: str | None = None,
        *,
        result: str | None = None,
    ) -> asyncio.Future[None]:
        self._check_held(run_id)
        actions = self._items[run_id].setdefault(item.row_key, {})
        old = actions.get(item.action_index)
        check_move(item.key, old.state if old else None, state)
        actions[item.action_index] = ItemRecord(
            run_id=run_id,
            row_key=item.row_key,
            action_index=item.action_index,
            action=item.action,
            state=state,
            attempts=(old.attempts if old else 0) + (state is ItemState.STARTED),
            reason=clean_text(reason, MAX_REASON_CHARS),
            detail=clean_text(detail, MAX_DETAIL_CHARS),
            # Decoded as SQLite's reads decode it, so both journals hold the same value.
            result=load_result(result) if result is not None else (old.result if old else None),
            site=item.site,
            account_id=item.account_id,
            updated_at=self._clock(),
        )
        self._count(run_id, old.state if old else None, state)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    # -- reads --------------------------------------------------------------------------------

    async def states(self, run_id: str, row_keys: Sequence[str]) -> Mapping[str, ItemRecord]:
        items = self._items.get(run_id, {})
        return {
            record.key: record
            for row_key in row_keys
            for record in items.get(row_key, {}).values()
        }

    async def records(
        self, run_id: str, states: Sequence[str] = PROBLEM_STATES
    ) -> AsyncIterator[ItemRecord]:
        wanted = parse_states(states)
        items = self._items.get(run_id, {})
        for state in wanted:
            for row_key in sorted(items):
                for index in sorted(items[row_key]):
                    record = items[row_key][index]
                    if record.state is state:
                        yield record

    async def get_run(self, run_id: str) -> RunRecord:
        self._get(run_id)
        return self._with_counts(run_id)

    async def latest_run(self, job_path: str) -> RunRecord | None:
        latest = self._latest(job_identity(job_path))
        return None if latest is None else self._with_counts(latest.run_id)

    async def done_by_action(self, run_id: str) -> Mapping[int, int]:
        self._get(run_id)
        out: Counter[int] = Counter()
        for actions in self._items[run_id].values():
            for index, record in actions.items():
                if record.state is ItemState.DONE:
                    out[index] += 1
        return dict(out)

    async def runs(self, limit: int = 20) -> Sequence[RunRecord]:
        return [self._with_counts(run_id) for run_id in self._order[::-1][:limit]]

    async def counts(self, run_id: str) -> RunCounts:
        run = await self.get_run(run_id)
        by_site: dict[str, dict[ItemState, int]] = {}
        reasons: Counter[tuple[ItemState, str]] = Counter()
        for actions in self._items[run_id].values():
            for record in actions.values():
                site = by_site.setdefault(record.site, {})
                site[record.state] = site.get(record.state, 0) + 1
                if record.state in PROBLEM_STATES and record.reason is not None:
                    reasons[(record.state, record.reason)] += 1
        order = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))
        by_reason = [ReasonCount(state, reason, n) for (state, reason), n in order]
        return RunCounts(run, run.by_state(), dict(sorted(by_site.items())), by_reason)

    # -- helpers ------------------------------------------------------------------------------

    def _get(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFoundError(run_id) from None

    def _with_counts(self, run_id: str) -> RunRecord:
        counts = {state: n for state, n in self._counts[run_id].items() if n > 0}
        return replace(self._runs[run_id], counts=counts)

    def _latest(self, ident: str) -> RunRecord | None:
        for run_id in reversed(self._order):
            if self._runs[run_id].job_path == ident:
                return self._runs[run_id]
        return None

    def _lock(self, ident: str, run: RunRecord | None) -> None:
        if ident in self._held.values():
            raise RunLockedError(run.run_id if run else f"of {ident}", this_holder())

    def _set_running(self, run_id: str, *, config_fingerprint: str) -> None:
        self._runs[run_id] = replace(
            self._runs[run_id],
            state=RunState.RUNNING,
            ended_at=None,
            holder=this_holder(),
            config_fingerprint=config_fingerprint,
        )

    def _count(self, run_id: str, old: ItemState | None, new: ItemState) -> None:
        counts = self._counts[run_id]
        if old is not None:
            counts[old] -= 1
        counts[new] += 1

    def _check_held(self, run_id: str) -> None:
        if not self._open:
            raise JournalError("the journal is not open (use `async with MemoryJournal()`)")
        if run_id not in self._held:
            raise JournalError(f"run {run_id} is not open in this journal (open_run or resume)")
