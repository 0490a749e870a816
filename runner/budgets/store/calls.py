"""The Jira budgets' programs: one request's take from every budget it needs, all or none, and
what Jira's answers teach them (``runner.budgets.store.programs`` says how programs run).

A request takes, in this order, from: the pauses on its scopes (a 429 anywhere in the app),
its issue (writes), its burst key, its site's own quota (once Jira has shown one), the app's
quota. A refusal anywhere rolls the whole take back and says how long to wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.budgets.store.programs import EPSILON, Gen, Grant, Program, Row, Stmt
from runner.budgets.store.steps import Step, Steps, gcra_step, paused_step

# The quota's row rolled into the window holding :now, as SQL expressions over the old row.
_NEW = "reset_at <= :now"
_USED = f"(CASE WHEN {_NEW} THEN 0 ELSE used END)"
_RESET = f"(CASE WHEN {_NEW} THEN (FLOOR(:now / window_s) + 1) * window_s ELSE reset_at END)"
# A quota has two pacing clocks over one count of points used: ``tat`` for most runs and
# ``serve_tat`` for serve's (``QuotaTerms.serve``), so that while a migration keeps its clock
# ahead serve's runs still pace by their own, and spend the share kept for them.
CLOCKS = ("tat", "serve_tat")
# The quota's size: what Jira showed (RateLimit-Policy) or the row was made with, never more
# than this process's config says (:cap, the app's quota_points): a policy can tighten the
# app's quota, not loosen it, and a row an earlier config made larger is held to today's. A
# tenant's quota has no configured size (Jira shows it): its cap is NO_CAP.
_SIZE = "LEAST(points, :cap)"
# Seconds per point: what is usable (:keep of the quota) spread evenly to the reset.
_PER_POINT = f"(({_RESET} - :now) / GREATEST({_SIZE} * :keep - {_USED}, 1))"


def _clock(column: str) -> str:
    """A pacing clock of the quota's row, rolled into the window holding :now."""
    return f"(CASE WHEN {_NEW} THEN :now ELSE {column} END)"


# A burst key's rate now: the cut rate regrowing to the default.
_RATE = ("LEAST(:rate, COALESCE(budget_gcra.cut_rate + :regrow * (:now - budget_gcra.cut_at),"
         " :rate))")


@dataclass(frozen=True)
class QuotaTerms:
    """How a quota is paced: ``margin`` of it kept unspent, ``burst`` of it may go at once,
    and ``reserve`` of it kept for serve's runs: a run that is not serve's (``serve`` False)
    spends at most 1 - margin - reserve of a window, serve's up to 1 - margin."""

    points: int
    window_s: float
    margin: float
    burst: float
    reserve: float = 0.0
    serve: bool = False

    @property
    def keep(self) -> float:
        """The share of each window these takes may spend."""
        return 1 - self.margin - (0.0 if self.serve else self.reserve)

    @property
    def clock(self) -> str:
        """The row's column these takes pace by."""
        return CLOCKS[1] if self.serve else CLOCKS[0]


@dataclass(frozen=True)
class BurstTerms:
    rate: float
    capacity_s: float
    regrow_per_s: float
    min_rate: float
    cut_hold_s: float


@dataclass(frozen=True)
class CallKeys:
    """What one request takes from: the names of its scopes and the terms of its budgets."""

    held: tuple[str, ...]  # every scope whose pause holds it back
    burst: str
    app_quota: str
    tenant_quota: str
    issue: str | None = None
    issue_rate: str = ""  # the row holding what Jira showed of the site's per-issue limit
    issue_interval: float = 0.0  # a spacing every write to the issue keeps (0: none)
    # (limit, window_s): at most ``limit`` writes to the issue in any ``window_s``
    issue_windows: tuple[tuple[int, float], ...] = ()


NO_CAP = 1e15


def _quota_take(scope: str, cost: float, terms: QuotaTerms, cap: float) -> Stmt:
    need = min(cost, terms.points * terms.keep)
    mine = terms.clock
    other = CLOCKS[1 - CLOCKS.index(mine)]
    return Stmt(
        f"UPDATE budget_quota SET used = {_USED} + :cost, {mine} = GREATEST({_clock(mine)},"
        f" :now) + :cost * {_PER_POINT}, {other} = {_clock(other)}, reset_at = {_RESET}"
        f" WHERE scope = :scope AND ({_USED} + :need <= {_SIZE} * :keep OR {_USED} = 0)"
        f" AND GREATEST({_clock(mine)}, :now) - GREATEST(1, :burst * {_SIZE}) * {_PER_POINT}"
        f" <= :now + {EPSILON} RETURNING used",
        {"scope": scope, "cost": cost, "need": need, "keep": terms.keep,
         "burst": terms.burst, "cap": cap})


def quota_row(scope: str, terms: QuotaTerms) -> Stmt:
    """The quota's row, made if it isn't there: its window the one holding ``:now``."""
    return Stmt("INSERT INTO budget_quota(scope, points, window_s, reset_at, used, tat,"
                " serve_tat) VALUES (:scope, :points, :window, (FLOOR(:now / :window) + 1)"
                " * :window, 0, :now, :now) ON CONFLICT (scope) DO NOTHING",
                {"scope": scope, "points": terms.points, "window": terms.window_s})


def quota_step(scope: str, cost: float, terms: QuotaTerms, *, absent_ok: bool) -> Step:
    """Take ``cost`` points from quota ``scope``: its row answers the points used since.
    ``absent_ok``: a quota with no row is not there to take from (a tenant's, until Jira has
    shown it; its size is Jira's alone, the app's is capped by ``terms.points``)."""
    cap = NO_CAP if absent_ok else float(terms.points)
    def refused(state: Row | None, now: float) -> Grant:
        assert state is not None
        points, window_s, reset_at, used, tat = (float(v) for v in state)
        points = min(points, cap)  # as the take's _SIZE
        if reset_at <= now:  # rolled: the refusal was by pacing in the new window
            used, tat, reset_at = 0.0, now, (now // window_s + 1) * window_s
        usable = points * terms.keep
        if used + min(cost, usable) > usable and used > 0:
            return Grant(False, reset_at - now, scope, "quota spent")
        per_point = (reset_at - now) / max(usable - used, 1.0)
        wait = max(tat, now) - max(1.0, terms.burst * points) * per_point - now
        return Grant(False, max(wait, EPSILON), scope, "pacing")
    why = Stmt(f"SELECT points, window_s, reset_at, used, {terms.clock} FROM budget_quota"
               " WHERE scope = :scope", {"scope": scope})
    return Step(_quota_take(scope, cost, terms, cap), why, refused, absent_ok=absent_ok)


def call_take(keys: CallKeys, cost: float, burst: BurstTerms, quota: QuotaTerms
              ) -> Steps[Grant]:
    """Everything one request needs, taken at once, or nothing and how long to wait."""
    steps = [paused_step(keys.held)]
    if keys.issue is not None:
        interval = ("GREATEST(:interval, COALESCE((SELECT r.emission FROM budget_gcra r"
                    " WHERE r.key = :rate_key), 0))")
        # The issue's row first: its lock (PostgreSQL) orders every take of this issue,
        # so the log's counts below can't be read by two takes at once.
        steps.append(gcra_step(keys.issue, interval, interval, 0.0,
                               {"interval": keys.issue_interval, "rate_key": keys.issue_rate},
                               "per-issue writes"))
        steps.extend(issue_window_steps(keys.issue, keys.issue_windows))
    tolerance = max(0.0, burst.capacity_s - 1.0 / burst.rate)
    steps.append(gcra_step(keys.burst, "1.0 / :rate", f"1.0 / {_RATE}", tolerance,
                           {"rate": burst.rate, "regrow": burst.regrow_per_s}, "burst pacing"))
    steps.append(quota_step(keys.tenant_quota, cost, quota, absent_ok=True))
    steps.extend((Step(quota_row(keys.app_quota, quota)),
                  quota_step(keys.app_quota, cost, quota, absent_ok=False)))
    return Steps(tuple(steps), _granted, lambda grant: grant)


def _granted(rows: Sequence[Row | None]) -> Grant:
    app = rows[-1]
    assert app is not None
    return Grant(True, used=float(app[0]))


# Entries of the issue log pruned by each write, from any issue: more than one write adds, so
# the log holds no more than the writes of the longest window (plus what ties leave).
PRUNE_ROWS = 8


def issue_window_steps(key: str, windows: tuple[tuple[int, float], ...]) -> list[Step]:
    """One write to issue ``key``: refused while any window already holds its limit (the wait
    is until the oldest write that fills it leaves), else logged."""
    steps = []
    for limit, window_s in windows:
        nth = ("SELECT t FROM budget_issue_log WHERE key = :key ORDER BY t DESC LIMIT 1"
               " OFFSET :n")
        params = {"key": key, "n": limit - 1, "w": window_s}

        def refused(row: Row | None, now: float, window_s: float = window_s) -> Grant:
            wait = float(row[0]) + window_s - now if row is not None else EPSILON
            return Grant(False, max(wait, EPSILON), key, "per-issue writes")
        steps.append(Step(Stmt(f"SELECT 1 WHERE COALESCE(({nth}) + :w, 0) <= :now + {EPSILON}",
                               params), Stmt(nth, params), refused))
    if windows:
        longest = {"key": key, "longest": max(w for _, w in windows), "n": PRUNE_ROWS}
        steps.append(Step(Stmt("INSERT INTO budget_issue_log(key, t) VALUES (:key, :now)",
                               longest)))
        steps.append(Step(Stmt("DELETE FROM budget_issue_log WHERE key = :key"
                               " AND t <= :now - :longest", longest)))
        steps.append(Step(prune_issue_log(longest)))
    return steps


def prune_issue_log(params: dict[str, Any]) -> Stmt:
    """A bounded prune of every issue's log: at most ``n`` entries older than ``longest``,
    none another take holds (PostgreSQL: ``SKIP LOCKED``, so two prunes never wait for each
    other; SQLite has one writer and no row locks, its driver drops the clause)."""
    return Stmt("DELETE FROM budget_issue_log WHERE ctid IN (SELECT ctid FROM budget_issue_log"
                " WHERE t <= :now - :longest LIMIT :n FOR UPDATE SKIP LOCKED)", params)


def call_give_back(keys: CallKeys, cost: float, burst: BurstTerms, quota: QuotaTerms
                   ) -> Program[None]:
    """A request taken but not sent: return its share of each budget."""
    def program(now: float) -> Gen[None]:
        if keys.issue is not None and keys.issue_windows:
            yield Stmt("DELETE FROM budget_issue_log WHERE key = :key AND t = (SELECT MAX(t)"
                       " FROM budget_issue_log WHERE key = :key)", {"key": keys.issue})
        if keys.issue is not None:
            yield Stmt("UPDATE budget_gcra SET tat = tat - GREATEST(:interval, COALESCE((SELECT"
                       " r.emission FROM budget_gcra r WHERE r.key = :rate_key), 0))"
                       " WHERE key = :key", {"key": keys.issue, "interval": keys.issue_interval,
                                             "rate_key": keys.issue_rate})
        yield Stmt(f"UPDATE budget_gcra SET tat = tat - 1.0 / {_RATE} WHERE key = :key",
                   {"key": keys.burst, "rate": burst.rate, "regrow": burst.regrow_per_s,
                    "now": now})
        clock = quota.clock
        for scope, cap in ((keys.tenant_quota, NO_CAP), (keys.app_quota, quota.points)):
            yield Stmt(f"UPDATE budget_quota SET used = GREATEST(0, used - :cost), {clock} ="
                       f" {clock} - :cost * {_PER_POINT} WHERE scope = :scope AND NOT ({_NEW})",
                       {"scope": scope, "cost": cost, "now": now, "keep": quota.keep,
                        "cap": cap})
    return program


# -- what Jira's answers teach ---------------------------------------------------------------------
def cut_burst(key: str, burst: BurstTerms) -> Program[float | None]:
    """A burst 429 on ``key``: halve its rate for everyone (once per ``cut_hold_s``) and empty
    its bucket. The new rate, or None when a cut came too recently."""
    def program(now: float) -> Gen[float | None]:
        tolerance = max(0.0, burst.capacity_s - 1.0 / burst.rate)
        params: dict[str, Any] = {"key": key, "rate": burst.rate, "regrow": burst.regrow_per_s,
                                  "now": now, "min": burst.min_rate, "hold": burst.cut_hold_s,
                                  "tol": tolerance}
        row = yield Stmt(
            f"INSERT INTO budget_gcra(key, tat, cut_rate, cut_at) VALUES (:key, :now + :tol"
            f" + 1.0 / GREATEST(:min, :rate / 2), GREATEST(:min, :rate / 2), :now) ON CONFLICT"
            f" (key) DO UPDATE SET cut_rate = GREATEST(:min, {_RATE} / 2), cut_at = :now,"
            f" tat = GREATEST(budget_gcra.tat, :now + :tol) + 1.0 / GREATEST(:min, {_RATE} / 2)"
            f" WHERE budget_gcra.cut_at IS NULL OR budget_gcra.cut_at <= :now - :hold"
            f" RETURNING cut_rate", params)
        return float(row[0]) if row is not None else None
    return program


def learn_issue_interval(rate_key: str, interval: float) -> Program[bool]:
    """Jira showed a site's per-issue limit tighter: space every issue's writes ``interval``
    apart from now on, for everyone. Whether that tightened the stored interval."""
    def program(now: float) -> Gen[bool]:
        row = yield Stmt(
            "INSERT INTO budget_gcra(key, tat, emission) VALUES (:key, :now, :e) ON CONFLICT"
            " (key) DO UPDATE SET emission = excluded.emission WHERE budget_gcra.emission IS"
            " NULL OR budget_gcra.emission < excluded.emission RETURNING emission",
            {"key": rate_key, "now": now, "e": interval})
        return row is not None
    return program


def issue_interval(rate_key: str) -> Program[float]:
    """The per-issue interval Jira has shown for a site so far (0: none)."""
    def program(now: float) -> Gen[float]:
        row = yield Stmt("SELECT emission FROM budget_gcra WHERE key = :key", {"key": rate_key})
        return float(row[0]) if row is not None and row[0] is not None else 0.0
    return program


@dataclass(frozen=True)
class QuotaNews:
    """What one answer said of a quota: points left, seconds to its reset, its policy."""

    scope: str
    remaining: float | None = None
    reset_in_s: float | None = None
    points: int | None = None
    window_s: float | None = None
    near_limit: bool = False
    exhausted: bool = False


def quota_news(news: QuotaNews, terms: QuotaTerms, *, make: bool) -> Program[None]:
    """Fold what Jira said into the quota's row: its size and window from ``RateLimit-Policy``,
    what is left (theirs wins when smaller), near-limit, and a quota 429 (nothing left until
    the reset). ``make``: Jira has shown this quota exists (a tenant's), so store it."""
    def program(now: float) -> Gen[None]:
        sized = dataclasses.replace(terms, points=news.points or terms.points,
                                    window_s=news.window_s or terms.window_s)
        if make:
            row = quota_row(news.scope, sized)
            yield Stmt(row.sql, {**row.params, "now": now})
        if news.points is not None or news.window_s is not None:
            yield Stmt("UPDATE budget_quota SET points = :points, reset_at = CASE WHEN"
                       " window_s = :window THEN reset_at ELSE (FLOOR(:now / :window) + 1)"
                       " * :window END, window_s = :window WHERE scope = :scope",
                       {"scope": news.scope, "points": sized.points, "window": sized.window_s,
                        "now": now})
        yield Stmt(f"UPDATE budget_quota SET used = {_USED}, tat = {_clock('tat')}, serve_tat"
                   f" = {_clock('serve_tat')}, reset_at = {_RESET} WHERE scope = :scope",
                   {"scope": news.scope, "now": now})
        if news.exhausted:
            reset = None if news.reset_in_s is None else now + news.reset_in_s
            yield Stmt("UPDATE budget_quota SET used = points, reset_at = CASE WHEN"
                       " CAST(:reset AS DOUBLE PRECISION) IS NULL THEN reset_at ELSE"
                       " GREATEST(reset_at, :reset) END WHERE scope = :scope",
                       {"scope": news.scope, "reset": reset})
            return
        if news.remaining is not None:
            yield Stmt("UPDATE budget_quota SET used = GREATEST(used, points - :remaining)"
                       " WHERE scope = :scope", {"scope": news.scope, "remaining": news.remaining})
        if news.near_limit:
            yield Stmt("UPDATE budget_quota SET used = GREATEST(used, points * 0.8)"
                       " WHERE scope = :scope", {"scope": news.scope})
    return program
