"""What ``run --fresh`` says before it starts over: the creates it will send again."""

from __future__ import annotations

from runner.job.jobfile import Job
from runner.journal import Journal


async def fresh_warning(journal: Journal, job: Job, identity: str) -> str:
    """What ``--fresh`` will do again: the creates done by the run a plain rerun would pick
    up (creates are the job's non-idempotent actions: sent again, they make a second one)."""
    latest = await journal.latest_run(identity)
    if latest is None:
        return f"--fresh: {job.name} has no earlier run; starting its first"
    done = await journal.done_by_action(latest.run_id)
    creates = [(a.name, done.get(a.index, 0)) for a in job.actions if not a.idempotent]
    total = sum(n for _, n in creates)
    which = ", ".join(f"{name} {n}" for name, n in creates if n)
    return (f"--fresh: starting over; run {latest.run_id} ({latest.state}) did {total} "
            f"create(s){f' ({which})' if which else ''}: this run sends them again")
