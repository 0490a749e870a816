"""The lines a run ends with: what it did, the exit code, and the next step that is right.

``outcome`` gives the exit code and the closing line: `retry RUN` for failed, skipped and
blocked items, `resume RUN` for uncertain ones (retry leaves them: a resume looks each up in
Jira first), exit 5 for a run that did nothing. ``recovery`` says what a resume found of the
creates whose answers were lost; ``nothing_to_do`` is a finished job run again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from runner.engine.engine import RunResult
from runner.errors import ExitCode
from runner.journal import ItemState
from runner.journal.base import REQUEUEABLE_STATES, RunCounts, RunRecord, RunState
from runner.journal.reasons import text_of
from runner.progress import RunStats

# The states `retry` puts back in line; uncertain items are resume's to resolve.
RETRIED = (ItemState.FAILED, ItemState.SKIPPED, ItemState.BLOCKED)


def touched(counts: Mapping[ItemState, int]) -> dict[ItemState, int]:
    """The counts of items the journal holds (pending ones are the job's size, not work)."""
    return {s: n for s, n in counts.items() if s is not ItemState.PENDING and n}


def finished(run: RunRecord) -> str:
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.ended_at))
            if run.ended_at is not None else "at an unknown time")
    counts = ", ".join(f"{n} {state}" for state, n in touched(run.counts).items()) or "no items"
    return f"finished {when} ({counts})"


def nothing_to_do(run: RunRecord, job: str) -> str:
    line = (f"nothing to do: every row of {job} was done by run {run.run_id}, "
            f"{finished(run)}; nothing was sent. `--fresh` starts over.")
    failed = sum(run.counts.get(s, 0) for s in REQUEUEABLE_STATES)
    if failed:
        line += (f" Its {failed} failed, skipped or blocked item(s): "
                 f"`forge-runner retry {run.run_id}`.")
    return line


def outcome(result: RunResult, counts: RunCounts, allowed: bool, *, fresh: bool = False
             ) -> tuple[int, str]:
    """The exit code and the closing line. A run whose items all ended without one done (or
    with no items at all) did nothing: exit 5 unless the job or the command allows it."""
    code = result.exit_code
    run_id = result.run_id
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and result.state is RunState.RUNNING:
        # PostgreSQL: this process left, other workers still hold lanes of the run.
        return code, (f"run {run_id} goes on: this process stopped, other workers still hold "
                      "lanes of it and finish it; `forge-runner status` follows it")
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and fresh:
        # Running the same --fresh command again would start yet another run.
        return code, (f"run {run_id} interrupted; resume it with `forge-runner resume {run_id}` "
                      "(or the same command without --fresh)")
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        return code, (f"run {run_id} interrupted; run the same command again to resume "
                      f"(or: forge-runner resume {run_id})")
    if code == ExitCode.BLOCKED and result.blocked:
        return code, f"run {run_id}: an environment is blocked (exit 3)"
    if code == ExitCode.BLOCKED:
        # Only some users' items: their mint was refused in words the config can't classify.
        blocked = counts.by_state.get(ItemState.BLOCKED, 0)
        return code, (f"run {run_id}: {_tally(counts)}: items blocked (exit 3); see "
                      f"`forge-runner report {run_id}` for the gateway's words, then "
                      f"`forge-runner retry {run_id}` puts the {blocked} blocked back in line")
    if code == ExitCode.FAILED:
        by_state = counts.by_state
        uncertain = by_state.get(ItemState.UNCERTAIN, 0)
        requeued = sum(by_state.get(s, 0) for s in RETRIED)
        steps = []
        if requeued:
            steps.append(f"`forge-runner retry {run_id}` puts the {requeued} failed, skipped "
                         "and blocked back in line")
        if uncertain:
            # retry does not touch them: resume looks each one up in Jira before sending again.
            steps.append(f"`forge-runner resume {run_id}` resolves the {uncertain} uncertain")
        return code, (f"run {run_id}: {_tally(counts)}: some items failed (exit 1); see "
                      f"`forge-runner report {run_id}`" + "".join(f", then {s}" for s in steps[:1])
                      + "".join(f"; {s}" for s in steps[1:]))
    by_state = counts.by_state
    total = sum(by_state.values())
    done = by_state.get(ItemState.DONE, 0)
    if total == 0:
        what = f"run {run_id}: 0 items: the source has no rows, nothing to do"
        if allowed:
            return ExitCode.OK, f"{what} (allowed)"
        return ExitCode.NOTHING_DONE, (f"{what} (exit 5); check the source's export, or set "
                                       "allow_empty = true in the job if that is expected")
    if done == 0:
        what = f"run {run_id}: {_tally(counts)}"
        reason = _top_reason(counts)
        if reason:
            what += f": {reason}"
        if allowed:
            return ExitCode.OK, f"{what} (allowed)"
        return ExitCode.NOTHING_DONE, (f"{what}; nothing was done (exit 5); see `forge-runner "
                                       f"report {run_id}`, then `forge-runner retry {run_id}` "
                                       "once fixed")
    if done == total:
        return code, f"run {run_id}: all done ({done:,} items)"
    return code, f"run {run_id}: {_tally(counts)}; see `forge-runner report {run_id}`"


_NOT_ENDED = (ItemState.PENDING, ItemState.STARTED)


def _tally(counts: RunCounts) -> str:
    """``0 done, 6 skipped``: done always, the other final states when there are any."""
    by_state = counts.by_state
    parts = [f"{by_state.get(ItemState.DONE, 0):,} done"]
    parts += [f"{n:,} {state.value}" for state, n in by_state.items()
              if state not in _NOT_ENDED and state != ItemState.DONE and n]
    return ", ".join(parts)


def _top_reason(counts: RunCounts) -> str | None:
    reasons = sorted(counts.by_reason, key=lambda r: -r.count)
    if not reasons:
        return None
    code = reasons[0].reason
    text = text_of(code)
    return code if text == code else f"{text} ({code})"


def recovery(prior: Mapping[ItemState, int], stats: RunStats) -> str | None:
    """What a resumed run made of the uncertain items it found (a create sent whose answer was
    lost), and of those left started by a crash or a drain (sent again if idempotent)."""
    uncertain = prior.get(ItemState.UNCERTAIN, 0)
    started = prior.get(ItemState.STARTED, 0)
    if not uncertain and not started:
        return None
    found, sent = stats.recovered[True], stats.recovered[False]
    parts = []
    if uncertain:
        parts.append(f"{uncertain:,} uncertain")
    if started:
        parts.append(f"{started:,} started, not known done")
    line = f"recovery: {' and '.join(parts)}: {found:,} found in Jira, {sent:,} sent again"
    still = stats.counts.uncertain
    return line + (f"; {still:,} uncertain now" if still else "")
