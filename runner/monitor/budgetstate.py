"""What the budgets hold right now, read for the status page and /metrics: the one place that
knows where budget state lives.

Mint buckets' use is counted from the mints the run reported (``RunStats``), against each
bucket's budget from the config; the points quota is read from the pacers of the runs going on
(each engine's ``JiraPacer``); pauses come from the events that announced them. When the budgets
move into the journal's database (shared across hosts), these functions are what changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runner.budgets.jira import JiraPacer
from runner.budgets.quota import PointsQuota
from runner.budgets.sharedjira import SharedJiraPacer
from runner.jira.ratelimit import Scope
from runner.progress.stats import RunStats


@dataclass(frozen=True)
class MintUse:
    """A mint bucket: ``used`` mints started in its last ``window_s`` seconds, of ``limit``."""

    bucket: str
    used: int
    limit: int
    window_s: float


@dataclass(frozen=True)
class QuotaUse:
    """A points quota: ``used`` and ``left`` of ``points`` in the window ending ``reset_at``."""

    scope: str
    points: int
    window_s: float
    used: float
    left: float
    reset_at: float


@dataclass(frozen=True)
class PauseView:
    """Work held back: its scope, the scope's kind, why, and for how long yet (None: open)."""

    scope: str
    kind: str
    reason: str
    until: float | None
    remaining_s: float | None


def mint_use(stats: RunStats) -> list[MintUse]:
    """Each configured bucket's use in its current window."""
    return [MintUse(bucket, stats.mints_in_window(bucket), budget.limit, budget.window_s)
            for bucket, budget in sorted(stats.budgets.items())]


def quota_use(pacers: Iterable[JiraPacer | SharedJiraPacer], now: float) -> list[QuotaUse]:
    """The points quotas of the runs going on, one per scope. Each run's pacer counts what it
    spent and what Jira's headers said; where two runs hold the same scope, the one that sees
    fewer points left is shown (Jira's quota is the app's, whoever spends it). A shared pacer
    shows the app quota as its last take read it from the journal's database."""
    seen: dict[str, QuotaUse] = {}
    for pacer in pacers:
        if isinstance(pacer, SharedJiraPacer):
            if (use := _shared_quota(pacer, now)) is not None and (
                    use.scope not in seen or use.left < seen[use.scope].left):
                seen[use.scope] = use
            continue
        for quota in _quotas(pacer):
            left = max(0.0, float(quota.snapshot(now)["remaining"]))
            use = QuotaUse(str(quota.scope), quota.points, quota.window_s,
                           max(0.0, quota.points - left), left, quota.reset_at)
            if use.scope not in seen or use.left < seen[use.scope].left:
                seen[use.scope] = use
    return [seen[scope] for scope in sorted(seen)]


def _shared_quota(pacer: SharedJiraPacer, now: float) -> QuotaUse | None:
    seen, budgets = pacer.quota_seen, pacer.budgets
    if seen is None:
        return None
    window = budgets.quota_window_s
    reset_at = (seen.at // window + 1) * window  # the store's windows start at multiples
    used = seen.used if now < reset_at else 0.0
    return QuotaUse(str(Scope.global_quota()), budgets.quota_points, window, used,
                    max(0.0, budgets.quota_points - used), reset_at if now < reset_at
                    else (now // window + 1) * window)


def _quotas(pacer: JiraPacer) -> list[PointsQuota]:
    # The per-tenant quotas exist only for the sites that have one; the pacer keeps them by site.
    return [pacer.quota, *pacer._tenants.values()]


def pauses(stats: RunStats, now: float) -> list[PauseView]:
    """Pauses in force, soonest to end first."""
    return [PauseView(p.scope, p.kind, p.reason, p.until,
                      None if p.until is None else max(0.0, p.until - now))
            for p in stats.active_pauses()]
