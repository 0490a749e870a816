"""TEMPORARY: old-style ``observer.event(name, **fields)`` calls, turned into typed Events.

runner/jira/executor.py, runner/minting/minter.py, runner/budgets/* and
runner/engine/rowworker.py still report with a name and keyword fields (and log separately).
Until they emit ``runner.events`` classes, every observer passes what it is given through
``as_event`` first. The table lists every name those files emit; each old call's keywords are
the class's field names, so converting a call is mechanical: ``observer.event("mint.ok",
environment=e, ...)`` becomes ``self._emit(MintOk(environment=e, ...))`` (with the log line's
extra fields), and its separate log line goes. Delete this module with the last old-style call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.events import (
    Event,
    ItemBlocked,
    ItemDone,
    ItemFailed,
    ItemSkipped,
    ItemUncertain,
    JiraCall,
    JiraRateLimited,
    JiraRetry,
    MintContextRefused,
    MintOk,
    MintRateLimited,
    MintRetry,
    MintUserRefused,
    Pause,
    Resume,
)

LEGACY: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        # runner/minting/minter.py
        MintOk,
        MintRateLimited,
        MintUserRefused,
        MintContextRefused,
        MintRetry,
        # runner/jira/executor.py
        JiraCall,
        JiraRateLimited,
        JiraRetry,
        # runner/budgets/cooldown.py, jira.py, mint.py
        Pause,
        Resume,
        # runner/engine/rowworker.py (f"item.{state}" for skipped and blocked)
        ItemDone,
        ItemFailed,
        ItemSkipped,
        ItemBlocked,
        ItemUncertain,
    )
}


def as_event(ev: Event | str, fields: Mapping[str, Any]) -> Event:
    """``ev`` itself, or the Event an old-style call (name and fields) stands for."""
    if isinstance(ev, Event):
        return ev
    cls = LEGACY.get(ev)
    if cls is None:
        raise ValueError(f"event: no class for the old-style name {ev!r} (runner.events)")
    if cls is MintContextRefused:
        fields = {**fields, "aris": tuple(fields.get("aris", ()))}
    return cls(**fields)
