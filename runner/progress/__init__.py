"""Where a run stands: statistics fed by events, a live view or plain lines, the end summary.

``RunStats`` is the ``Observer`` the engine hands events to; ``open_progress`` picks the rich
live view on a terminal and plain ``runner.progress`` log lines elsewhere; ``Summary.render``
is the text printed at the end. The JSON report is ``runner.report``.
"""

from runner.progress.live import LiveView, PlainProgress, open_progress
from runner.progress.stats import (
    ITEM_STATES,
    Counts,
    MintBudget,
    Notable,
    Pause,
    RunStats,
    scope_kind,
)
from runner.progress.summary import Summary

__all__ = [
    "ITEM_STATES",
    "Counts",
    "LiveView",
    "MintBudget",
    "Notable",
    "Pause",
    "PlainProgress",
    "RunStats",
    "Summary",
    "open_progress",
    "scope_kind",
]
