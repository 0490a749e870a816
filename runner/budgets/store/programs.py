"""The budget statements, written once for SQLite and PostgreSQL: each take a small program.

A program is a generator: it is given the database's clock (``now``, POSIX seconds, read once at
the start of its transaction) and yields ``Stmt``s, receiving each one's first row (or None);
what it returns is the take's answer. A backend's driver runs the whole program in one
transaction and commits, or rolls back when the program says ``Refused`` (so a request refused
by its fourth budget gives back what the first three granted without a statement of its own).

Every take is one conditional statement on the budget's row, never a read followed by a write:
``INSERT ... ON CONFLICT DO UPDATE ... WHERE <there is room> RETURNING``. A row returned means
granted; none means refused, and the program reads the row only to say how long to wait.

Budgets (one row each; keys are the scopes' names, e.g. ``mint:dev``, ``burst:acme:GET /x``):
- ``budget_gcra``: a theoretical arrival time per key (GCRA). Mint buckets (evenly spaced),
  burst keys (an adaptive rate: ``cut_rate`` at ``cut_at`` regrowing to the default), issues
  (evenly spaced at the per-issue rate, slowed by what Jira showed: ``issuerate:<site>`` rows).
- ``budget_quota``: a points quota per scope (app, and tenant once Jira says so): its window's
  reset, points used, and two pacing arrival times spreading what is left to the reset (one
  for serve's runs, which may spend the share the others keep for them).
- ``budget_pause``: a 429's pause per scope (``blocked_until``), for every process.
- ``budget_mint_log``: a mint bucket's last ``limit`` starts and when each was answered, the
  window guard of ``mint_take``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Stmt:
    """One SQL statement with ``:name`` parameters (each backend renders its own dialect)."""

    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Grant:
    """A take's answer: granted (``wait_s`` 0), or refused for ``wait_s`` by ``scope``."""

    ok: bool
    wait_s: float = 0.0
    scope: str = ""
    reason: str = ""
    paused: bool = False  # refused by a 429's pause rather than by pacing
    used: float | None = None  # granted: the app quota's points used in its window since


class Refused(Exception):
    """Raised inside a program: roll back everything it took, answer ``grant``."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(grant.scope)
        self.grant = grant


Gen = Generator[Stmt, Row | None, T]
Program = Callable[[float], Gen[T]]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS budget_gcra (key TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT"
    " NULL, cut_rate DOUBLE PRECISION, cut_at DOUBLE PRECISION, emission DOUBLE PRECISION,"
    " seq BIGINT)",
    "CREATE TABLE IF NOT EXISTS budget_mint_log (key TEXT NOT NULL, seq BIGINT NOT NULL,"
    " started DOUBLE PRECISION NOT NULL, answered DOUBLE PRECISION, PRIMARY KEY (key, seq))",
    "CREATE TABLE IF NOT EXISTS budget_quota (scope TEXT PRIMARY KEY, points DOUBLE PRECISION"
    " NOT NULL, window_s DOUBLE PRECISION NOT NULL, reset_at DOUBLE PRECISION NOT NULL,"
    " used DOUBLE PRECISION NOT NULL, tat DOUBLE PRECISION NOT NULL, serve_tat DOUBLE"
    " PRECISION NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS budget_pause (scope TEXT PRIMARY KEY, until DOUBLE PRECISION"
    " NOT NULL, reason TEXT NOT NULL)",
    # Per-issue writes: a sliding log per issue (Jira's windows hold bursts a rate can't).
    "CREATE TABLE IF NOT EXISTS budget_issue_log (key TEXT NOT NULL, t DOUBLE PRECISION NOT"
    " NULL)",
    "CREATE INDEX IF NOT EXISTS budget_issue_log_key_t ON budget_issue_log (key, t)",
    # What finds the entries every issue's windows have left behind (``prune_issue_log``).
    "CREATE INDEX IF NOT EXISTS budget_issue_log_t ON budget_issue_log (t)",
)

# Columns added since a table was first made: (table, column, its definition). Each backend
# adds the ones a store made by an earlier version lacks, when it opens (before any take).
ADDED_COLUMNS = (
    # serve's own pacing clock (``runner.budgets.store.calls.CLOCKS``); 0 is long past: now.
    ("budget_quota", "serve_tat", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
)

# Readiness within a microsecond counts as now (float arithmetic on times).
EPSILON = 1e-6


# -- pauses ----------------------------------------------------------------------------------------
def in_list(name: str, values: Sequence[str]) -> tuple[str, dict[str, Any]]:
    names = [f"{name}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


def check_paused(scopes: Sequence[str], now: float) -> Gen[None]:
    """Refuse while a 429's pause on any of ``scopes`` lasts."""
    marks, params = in_list("s", scopes)
    row = yield Stmt(f"SELECT until, reason, scope FROM budget_pause WHERE scope IN ({marks})"
                     " AND until > :now ORDER BY until DESC LIMIT 1", {**params, "now": now})
    if row is not None:
        raise Refused(Grant(False, float(row[0]) - now, str(row[2]), str(row[1]), paused=True))


def pause(scope: str, seconds: float, reason: str) -> Program[bool]:
    """Pause ``scope`` for ``seconds`` from the database's now; a longer pause stands."""
    def program(now: float) -> Gen[bool]:
        row = yield Stmt(
            "INSERT INTO budget_pause(scope, until, reason) VALUES (:scope, :until, :reason)"
            " ON CONFLICT (scope) DO UPDATE SET until = excluded.until, reason = excluded.reason"
            " WHERE budget_pause.until < excluded.until RETURNING until",
            {"scope": scope, "until": now + seconds, "reason": reason})
        return row is not None
    return program


def paused_for(scopes: Sequence[str]) -> Program[float]:
    """Seconds the longest pause on ``scopes`` still lasts (0 when none does)."""
    def program(now: float) -> Gen[float]:
        try:
            yield from check_paused(scopes, now)
        except Refused as refused:
            return refused.grant.wait_s
        return 0.0
    return program


def mint_answered(key: str, seq: int, ago: float) -> Program[None]:
    """Start ``seq`` of bucket ``key`` was answered ``ago`` seconds before this program began
    (stored on the database's clock as ``now - ago``: ``now`` is read later than ``ago`` was
    measured, so the stored answer is never earlier than the real one)."""
    def program(now: float) -> Gen[None]:
        yield Stmt("UPDATE budget_mint_log SET answered = :at WHERE key = :key AND seq = :seq"
                   " AND answered IS NULL", {"key": key, "seq": seq, "at": now - ago})
    return program
