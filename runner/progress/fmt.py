"""Small text formatters shared by the live view, the plain lines and the summary."""

from __future__ import annotations

from collections.abc import Mapping


def duration(seconds: float | None) -> str:
    """``3725`` -> ``1h 02m 05s``; ``65`` -> ``1m 05s``; ``4.25`` -> ``4.2s``; None -> ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def count(n: int | None) -> str:
    """``12345`` -> ``12,345``; None (not known yet) -> ``?``."""
    return "?" if n is None else f"{n:,}"


def rate(per_s: float | None) -> str:
    """Items per second, or per minute when slower than one a second."""
    if per_s is None:
        return "-"
    if per_s >= 1:
        return f"{per_s:,.1f}/s"
    return f"{per_s * 60:,.1f}/min"


def until(deadline: float | None, now: float) -> str:
    """How long until a POSIX ``deadline``: ``for 3.2s``, or ``until resumed`` when open-ended."""
    if deadline is None:
        return "until resumed"
    return f"for {duration(max(0.0, deadline - now))}"


def window(seconds: float) -> str:
    """A budget's window: ``60s``, ``3s``, ``0.5s``, ``1h``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"


def ranked(counter: Mapping[tuple[str, str], int]) -> list[str]:
    """Counts keyed by (kind, reason) as ``kind reason n`` texts, commonest first."""
    order = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"{kind} {reason} {count(n)}" for (kind, reason), n in order]
