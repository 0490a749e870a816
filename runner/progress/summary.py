"""The text summary printed when a run ends."""

from __future__ import annotations

from collections import Counter

from runner.journal.reasons import text_of
from runner.logs.redact import redact
from runner.progress import fmt
from runner.progress.stats import ITEM_STATES, RunStats


class Summary:
    """Renders a finished (or interrupted) run's ``RunStats`` as plain text, redacted."""

    @classmethod
    def render(
        cls,
        stats: RunStats,
        *,
        lower_bound_s: float | None = None,
        top: int = 5,
        title: str = "forge-runner",
    ) -> str:
        """Counts, duration (against the plan's lower bound when given), mints, 429s by
        reason, pauses, the ``top`` commonest failure reasons, blocked environments."""
        rows: list[tuple[str, str]] = [
            ("items", cls._items(stats)),
            ("duration", cls._duration(stats, lower_bound_s)),
            ("mints", cls._mints(stats)),
            ("429s", _counted(stats.rate_limits)),
            ("pauses", _counted(stats.pause_count)),
        ]
        if stats.retries:
            rows.append(("retries", _counted(stats.retries)))
        if len(stats.sites) > 1:
            per_site = "; ".join(
                f"{site}: {cls._states(counts.as_dict())}"
                for site, counts in sorted(stats.sites.items())
            )
            rows.append(("per site", per_site))
        for env, message in sorted(stats.blocked_environments.items()):
            rows.append(("blocked", f"environment {env}: {message}"))
        width = max(len(label) for label, _ in rows)
        lines = [f"{title} summary"]
        lines += [f"  {label:<{width}}  {text}" for label, text in rows]
        reasons = stats.top_reasons(top)
        if reasons:
            lines.append(f"  {'reasons':<{width}}  top {len(reasons)} of items not done:")
            pad = max(len(fmt.count(n)) for _, _, n in reasons)
            lines += [
                f"  {'':<{width}}    {fmt.count(n):>{pad}}  {state:<9} "
                f"{reason_line(reason, stats.message_of(state, reason))}"
                for state, reason, n in reasons
            ]
        return redact("\n".join(lines))

    @staticmethod
    def _states(counts: dict[str, int]) -> str:
        shown = [f"{fmt.count(counts[s])} {s}" for s in ITEM_STATES if counts[s] or s == "done"]
        return ", ".join(shown)

    @classmethod
    def _items(cls, stats: RunStats) -> str:
        states = cls._states(stats.counts.as_dict())
        of = f"{fmt.count(stats.finished)} of {fmt.count(stats.total)}"
        return f"{of} finished: {states}"

    @staticmethod
    def _duration(stats: RunStats, lower_bound_s: float | None) -> str:
        elapsed = stats.elapsed_s()
        text = fmt.duration(elapsed)
        # A bound under a twentieth of a second prints as "0.0s": a ratio to it says nothing.
        if lower_bound_s and lower_bound_s >= 0.05:
            text += (
                f" (the budgets allow {fmt.duration(lower_bound_s)} at best:"
                f" {elapsed / lower_bound_s:.2f}x)"
            )
        return text

    @staticmethod
    def _mints(stats: RunStats) -> str:
        total = sum(stats.mints.values())
        parts = []
        for bucket, used in sorted(stats.mints.items()):
            budget = stats.budgets.get(bucket)
            rate = f" (budget {budget.limit:,} per {fmt.window(budget.window_s)})" if budget else ""
            parts.append(f"{bucket} {fmt.count(used)}{rate}")
        text = fmt.count(total)
        if stats.mints_refused:
            text += f" ({fmt.count(stats.mints_refused)} refused)"
        text += f": {', '.join(parts)}" if parts else ""
        refused = sum(stats.refused_users.values())
        if refused:
            who = "user" if refused == 1 else "users"
            text += f"; {fmt.count(refused)} {who} can't be impersonated"
        return text


def reason_line(code: str, message: str) -> str:
    """``http-404: Issue does not exist...`` when the items share Jira's words, else the
    code's short text: ``user-deactivated: the user is deactivated``."""
    if message:
        return f"{code}: {message}"
    text = text_of(code)
    return code if text == code else f"{code}: {text}"


def _counted(counter: Counter[tuple[str, str]]) -> str:
    total = sum(counter.values())
    return f"{fmt.count(total)}: {', '.join(fmt.ranked(counter))}" if total else "none"
