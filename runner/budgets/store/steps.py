"""Takes written as a list of steps, so that PostgreSQL runs a whole take in one round trip.

A generator program (``runner.budgets.store.programs``) decides in Python between its
statements, so on PostgreSQL each statement is a round trip made while the rows taken so far
stay locked; a request's take was 6-10 of them. A take whose statements don't depend on one
another's answers (each reads what the ones before it wrote from the database itself) is
written instead as ``Steps``: every step is a conditional statement that returns a row when it
took, and a ``why`` statement read only when it did not. The first refusal ends the take and
rolls back everything the steps before it took. SQLite runs the steps from Python inside its
``BEGIN IMMEDIATE``; PostgreSQL runs them all in the server function ``budget_steps`` (created
with the tables), in one call: one round trip, its row locks held for no network time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runner.budgets.store.programs import EPSILON, Grant, Row, Stmt, in_list

T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """``take`` returns a row when it took. When it returns none, ``why`` is read: its row (or
    None) goes to ``refused``, which says how long to wait. A step without ``why`` can't be
    refused (a log write, a prune). ``absent_ok``: no row for ``why`` means the budget does not
    exist (a tenant's quota before Jira showed one), so the take goes on."""

    take: Stmt
    why: Stmt | None = None
    refused: Callable[[Row | None, float], Grant] | None = None
    absent_ok: bool = False


@dataclass(frozen=True)
class Steps(Generic[T]):
    """A take: ``granted`` builds its answer from every step's row (None for a step without
    ``why`` or an absent budget), ``refusal`` from the grant the refusing step gave."""

    steps: tuple[Step, ...]
    granted: Callable[[Sequence[Row | None]], T]
    refusal: Callable[[Grant], T]

    def answer(self, now: float, rows: Sequence[Row | None], refused_at: int | None,
               why: Row | None) -> T:
        """The take's answer: ``refused_at`` the index of the step that refused, if any."""
        if refused_at is None:
            return self.granted(rows)
        step = self.steps[refused_at]
        assert step.refused is not None
        return self.refusal(step.refused(why, now))


# The whole take in one call. A step's statement gets the clock as $1 (read once, at the start,
# like a program's ``now``); the other parameters come inlined as literals. The inner block is
# a subtransaction: raising at a refusal rolls back what the steps before it took, and the
# exception caught here is never an error the server logs or the client sees.
FUNCTION = """
CREATE OR REPLACE FUNCTION budget_steps(takes text[], whys text[], absent_ok boolean[],
    OUT now double precision, OUT refused_at integer, OUT why text, OUT rows text[])
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    n bigint;
BEGIN
    now := extract(epoch FROM clock_timestamp());
    rows := '{}';
    BEGIN
        FOR i IN 1 .. coalesce(array_length(takes, 1), 0) LOOP
            IF whys[i] IS NULL THEN
                EXECUTE takes[i] USING now;
                rows := rows || NULL::text;
                CONTINUE;
            END IF;
            EXECUTE takes[i] INTO r USING now;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN
                rows := rows || to_json(r)::text;
                CONTINUE;
            END IF;
            EXECUTE whys[i] INTO r USING now;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 AND absent_ok[i] THEN
                rows := rows || NULL::text;
                CONTINUE;
            END IF;
            refused_at := i - 1;
            why := CASE WHEN n > 0 THEN to_json(r)::text END;
            RAISE SQLSTATE 'FRB01';
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'FRB01' THEN
        rows := NULL;
    END;
END
$fn$
"""


def decode_row(text: str | None) -> Row | None:
    """A row as ``to_json`` wrote it, back to a tuple in column order (names may repeat)."""
    if text is None:
        return None
    return tuple(json.loads(text, object_pairs_hook=lambda pairs: [v for _, v in pairs]))


def run_sqlite(steps: Steps[T], now: float, fetch: Callable[[Stmt], Row | None]
               ) -> tuple[T, bool]:
    """Run ``steps`` with ``fetch`` (one statement's first row) in the caller's transaction:
    the answer, and whether the caller must roll back (a step refused)."""
    rows: list[Row | None] = []
    for index, step in enumerate(steps.steps):
        row = fetch(step.take)
        if row is not None or step.why is None:
            rows.append(row if step.why is not None else None)
            continue
        why = fetch(step.why)
        if why is None and step.absent_ok:
            rows.append(None)
            continue
        return steps.answer(now, rows, index, why), True
    return steps.answer(now, rows, None, None), False


def arguments(steps: Steps[Any], literal: Callable[[Stmt], str]) -> tuple[list[str],
                                                                         list[str | None],
                                                                         list[bool]]:
    """``budget_steps``'s arguments: each step's statements rendered by ``literal``."""
    return ([literal(s.take) for s in steps.steps],
            [literal(s.why) if s.why is not None else None for s in steps.steps],
            [s.absent_ok for s in steps.steps])


# -- the steps every take is made of ---------------------------------------------------------------
def paused_step(scopes: Sequence[str]) -> Step:
    """Refused while a 429's pause on any of ``scopes`` lasts."""
    marks, params = in_list("s", scopes)
    where = f"FROM budget_pause WHERE scope IN ({marks}) AND until > :now"
    return Step(Stmt(f"SELECT 1 WHERE NOT EXISTS (SELECT 1 {where})", params),
                Stmt(f"SELECT until, reason, scope {where} ORDER BY until DESC LIMIT 1", params),
                _paused)


def _paused(row: Row | None, now: float) -> Grant:
    if row is None:  # the pause ended between the two reads: look again at once
        return Grant(False, EPSILON, "", "", paused=True)
    return Grant(False, float(row[0]) - now, str(row[2]), str(row[1]), paused=True)


def gcra_step(key: str, first: str, emission: str, tolerance: float, params: dict[str, Any],
              reason: str) -> Step:
    """One arrival from ``key``: granted while its arrival time is within ``tolerance`` of now,
    which then moves on by ``emission`` (an SQL expression over the row; ``first`` for a new
    row)."""
    base = {**params, "key": key, "tol": tolerance}
    take = Stmt(
        f"INSERT INTO budget_gcra(key, tat) VALUES (:key, :now + {first})"
        f" ON CONFLICT (key) DO UPDATE SET tat = GREATEST(budget_gcra.tat, :now) + {emission}"
        f" WHERE budget_gcra.tat - :tol <= :now + {EPSILON} RETURNING tat", base)

    def refused(row: Row | None, now: float) -> Grant:
        wait = float(row[0]) - tolerance - now if row is not None else 0.0
        return Grant(False, max(wait, EPSILON), key, reason)
    return Step(take, Stmt("SELECT tat FROM budget_gcra WHERE key = :key", {"key": key}), refused)
