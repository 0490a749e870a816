"""A mint bucket's take, shared by every process: one start, evenly paced, behind a window
guard (``runner.budgets.store.steps`` says how a take of steps runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runner.budgets.store.programs import EPSILON, Grant, Row, Stmt
from runner.budgets.store.steps import Step, Steps, paused_step

# A mint bucket waiting on a start not yet answered looks again this often.
UNANSWERED_POLL_S = 0.01


@dataclass(frozen=True)
class MintGrant:
    """A mint start's answer: granted as start ``seq`` of its bucket, or ``grant`` refused."""

    grant: Grant
    seq: int = 0


def mint_take(key: str, interval: float, slack: float, limit: int, window_s: float,
              answer_limit_s: float) -> Steps[MintGrant]:
    """One mint start from bucket ``key``, for everyone: starts evenly ``interval`` apart, and
    none less than ``window_s`` after the answer to the start ``limit`` before it (the gateway
    counted that one by then at the latest, so a sliding window can't hold ``limit + 1``,
    whatever the delays). A start never answered (its process died) counts as answered
    ``answer_limit_s`` after it left: its request has timed out by then. ``slack``: lateness
    forgiven, so a waiter that overslept a little keeps the schedule instead of losing it."""
    params = {"key": key, "interval": interval, "limit": limit, "window": window_s,
              "answer_limit": answer_limit_s, "slack": slack}
    guard = ("SELECT 1 FROM budget_mint_log l WHERE l.key = budget_gcra.key AND l.seq ="
             " budget_gcra.seq + 1 - :limit AND COALESCE(l.answered, l.started + :answer_limit)"
             " + :window > :now")
    take = Stmt(
        "INSERT INTO budget_gcra(key, tat, seq) VALUES (:key, :now + :interval, 1)"
        " ON CONFLICT (key) DO UPDATE SET tat = GREATEST(budget_gcra.tat, :now - :slack)"
        f" + :interval, seq = budget_gcra.seq + 1 WHERE budget_gcra.tat <= :now + {EPSILON}"
        f" AND NOT EXISTS ({guard}) RETURNING seq", params)
    why = Stmt(
        "SELECT g.tat, COALESCE(l.answered, l.started + :answer_limit) + :window, l.answered"
        " FROM budget_gcra g LEFT JOIN budget_mint_log l ON l.key = g.key"
        " AND l.seq = g.seq + 1 - :limit WHERE g.key = :key", params)
    # The start's log entry and the pruning of the one ``limit`` back read the seq just taken
    # from the bucket's row (which this take holds), not from the take's answer.
    seq_now = "(SELECT seq FROM budget_gcra WHERE key = :key)"
    log = Stmt("INSERT INTO budget_mint_log(key, seq, started) SELECT :key, seq, :now"
               " FROM budget_gcra WHERE key = :key", params)
    prune = Stmt(f"DELETE FROM budget_mint_log WHERE key = :key AND seq <= {seq_now} - :limit",
                 params)
    return Steps((paused_step([key]), Step(take, why, _refused(key)), Step(log), Step(prune)),
                 _granted, MintGrant)


def _granted(rows: Sequence[Row | None]) -> MintGrant:
    taken = rows[1]
    assert taken is not None
    return MintGrant(Grant(True), int(taken[0]))


def _refused(key: str) -> Callable[[Row | None, float], Grant]:
    def refused(state: Row | None, now: float) -> Grant:
        assert state is not None
        ready = max(float(state[0]), float(state[1]) if state[1] is not None else 0.0)
        wait = max(ready - now, EPSILON)
        if state[1] is not None and state[2] is None:
            wait = min(wait, UNANSWERED_POLL_S)  # its answer may come any moment
        return Grant(False, wait, key, "mint pacing")
    return refused
