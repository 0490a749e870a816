"""The status page's data, as plain JSON values: what ``/status.json`` answers.

Everything here comes from the monitor's counts and the budgets' state: no token is ever in it
(events never carry one, and installations are shown by their times only). Account IDs, rows
and Jira's messages are, which is why the page is loopback-only without an operator token.
"""

from __future__ import annotations

import statistics
from typing import Any

from runner.journal.reasons import text_of
from runner.monitor import budgetstate
from runner.monitor.lanes import NO_POSTGRES
from runner.monitor.subscriber import Monitor, RunView, SiteView

TOP_REASONS = 5


def snapshot(monitor: Monitor) -> dict[str, Any]:
    now = monitor.clock.now()
    budgets = monitor.budgets
    return {
        "now": now,
        "process": {"kind": monitor.process, "started_at": monitor.started_at},
        "cluster": _cluster(monitor),
        "runs": [_run(view) for view in reversed(monitor.runs.values())],
        "budgets": {
            "mint": [vars(u) for u in budgetstate.mint_use(budgets)],
            "quota": [vars(q) for q in monitor.quota()],
            "pauses": [vars(p) for p in budgetstate.pauses(budgets, now)],
        },
        "sites": [_site(name, view) for name, view in sorted(monitor.sites.items())],
        "installations": [
            {"installation_id": i.installation_id, "cloud_id": i.cloud_id,
             "environment": i.environment, "expires_at": i.expires_at,
             "expires_in_s": None if i.expires_at is None else i.expires_at - now,
             "age_s": None if i.received_at is None else now - i.received_at}
            for i in monitor.installations()
        ],
    }


def _run(view: RunView) -> dict[str, Any]:
    stats = view.stats
    failures = [{"state": state, "reason": reason, "text": text_of(reason), "count": count,
                 "rows": view.rows.get((state, reason), [])}
                for state, reason, count in stats.top_reasons(TOP_REASONS)]
    running = view.state == "running"
    return {
        "run_id": view.run_id,
        "job": view.job,
        "sites": view.sites,
        "state": view.state,
        "total": stats.total,
        "finished": stats.finished,
        "counts": stats.counts.as_dict(),
        "rate": stats.item_rate() if running else None,
        "eta_s": stats.eta_s() if running else None,
        "elapsed_s": stats.elapsed_s(),
        "bound_s": view.bound_s,
        "failures": failures,
    }


def _site(name: str, view: SiteView) -> dict[str, Any]:
    samples = sorted(view.latencies)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))] if samples else None
    return {
        "site": name,
        "requests": view.requests,
        "rate_limited": dict(sorted(view.rate_limited.items())),
        "p50_ms": statistics.median(samples) * 1000 if samples else None,
        "p95_ms": p95 * 1000 if p95 is not None else None,
    }


def _cluster(monitor: Monitor) -> dict[str, Any]:
    """The journal's workers and, per open run, the lanes each holds (as the latest read)."""
    if monitor.lanes is None:
        return {"shared": False, "note": NO_POSTGRES, "workers": [], "runs": []}
    view = monitor.lanes.view
    by_id = {w.worker: w for w in view.workers}
    runs = []
    for run in view.runs:
        held = []
        for owner, n in run.held.items():
            worker = by_id.get(owner)
            held.append({"worker": owner, "host": worker.host if worker else None,
                         "pid": worker.pid if worker else None, "lanes": n,
                         "alive": worker is not None})
        runs.append({"run_id": run.run_id, "open": run.open, "held": held})
    return {"shared": True, "note": view.error, "me": view.me,
            "workers": [{**vars(w), "heartbeat_age_s": round(w.heartbeat_age_s, 1),
                         "this_process": w.worker == view.me} for w in view.workers],
            "runs": runs}
