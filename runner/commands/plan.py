"""``forge-runner plan JOB``: check everything, send nothing, and say how long it must take.

Prints rows, users, items, mints needed, points, calls per endpoint, writes per issue, and the
shortest possible duration under each budget, naming the one that binds. ``--json`` prints the
same for machines. A bad config or job exits 2, naming the file, the key or line, and what was
expected.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from runner.commands import DEFAULT_CONFIG
from runner.config.configfile import load_config
from runner.job.jobfile import load_job
from runner.job.plan import Plan, make_plan


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="check a job and count its work; nothing is sent",
        description="Check the config, the job and every row; count rows, users, items, mints "
        "and points; give the shortest possible duration under the budgets and the budget that "
        "binds. Nothing is sent.",
    )
    p.add_argument("job", metavar="JOB", help="the job file (TOML)")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"the config file (default: {DEFAULT_CONFIG})")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    job = load_job(args.job, config)
    plan = make_plan(job, config)
    if args.json:
        json.dump(plan.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_plan(plan))
    return 0


def duration(seconds: float) -> str:
    """``0.4 s``, ``13.5 s``, ``12 min 5 s``, ``3 h 20 min``."""
    if math.isinf(seconds):
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _rate(rate: float) -> str:
    return f"{rate:.3g}/s"


def _table(
    headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: set[int]
) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w)
               for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  " + "  ".join(out).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def format_plan(plan: Plan) -> str:
    lines = [f"Plan for {plan.job} ({plan.path}): nothing was sent.", ""]
    n_actions = plan.items // plan.rows if plan.rows else 0
    summary = [
        ("rows", f"{plan.rows:,}"),
        ("users", f"{plan.users:,}"),
        ("items", f"{plan.items:,} ({plan.rows:,} rows x {n_actions} actions)"),
        ("mints needed", f"{plan.mints:,} (one per site and user)"),
        ("points", f"{plan.points:,} (estimated)"),
    ]
    if len(plan.site_rows) > 1:
        summary.append(("rows per site", ", ".join(f"{s} {n:,}" for s, n in
                                                    plan.site_rows.items())))
    if plan.python_items:
        summary.append(("python items", f"{plan.python_items:,} (their calls are not counted)"))
    width = max(len(k) for k, _ in summary)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in summary]
    if plan.calls:
        lines += ["", "Calls"]
        lines += _table(("site", "method", "endpoint", "calls", "points"),
                        [(c.site, c.method, c.template, f"{c.calls:,}", f"{c.points:,}")
                         for c in plan.calls], {3, 4})
    if plan.issues_written:
        name = plan.busiest_issue or "one issue"
        lines += ["", f"Writes per issue: {plan.issues_written:,} issues written; the busiest, "
                  f"{name}, gets {plan.busiest_issue_writes:,}."]
    lines += ["", "Shortest possible duration under each budget"]
    rows = []
    for b in plan.bounds:
        mark = "<- binds" if b is plan.binding else ""
        rows.append((b.budget, b.scope, f"{b.amount:,} {b.unit}", b.limit or _rate(b.rate),
                     duration(b.seconds), mark))
    lines += _table(("budget", "scope", "work", "limit", "time", ""), rows, {2, 4})
    lines.append("")
    if plan.binding is None:
        lines.append("Nothing to pace: no budget limits this job.")
    else:
        b = plan.binding
        lines.append(f"Shortest possible duration: {duration(plan.shortest_s)}, bound by the "
                     f"{b.budget} ({b.scope}).")
    return "\n".join(lines) + "\n"
