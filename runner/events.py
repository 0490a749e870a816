"""What the runner's parts tell the outside world while they work: one observer interface.

Minting, Jira calls and the engine report what happens (a mint, a 429, a pause, an item's end)
to an ``Observer``; progress display, run statistics and the report implement it. Parts never
import the display, and the display never reaches into the parts.

Event names are stable and dotted; fields are plain values and never hold a token:
    mint.ok              environment, site, account
    mint.rate_limited    bucket, until (POSIX time), shape (retry_after|reset|graphql|backoff)
    mint.user_refused    environment, site, account, reason
    mint.context_refused environment, aris (tuple), message
    mint.retry           environment, reason, attempt
    system_token.waiting environment, reason
    system_token.ok      environment, expires_at
    jira.call            site, method, template, status
    jira.rate_limited    site, scope (str), reason, until
    jira.retry           site, template, reason, attempt
    pause                scope (str), reason, until      (any budget holding work back)
    resume               scope (str)
    item.done / item.failed / item.skipped / item.blocked / item.uncertain
                         site, account, row, action, reason (failed/skipped/blocked/uncertain)
"""

from __future__ import annotations

from typing import Any, Protocol


class Observer(Protocol):
    def event(self, name: str, /, **fields: Any) -> None: ...


class NullObserver:
    """Ignores every event."""

    def event(self, name: str, /, **fields: Any) -> None:
        return None


class FanOut:
    """Passes every event to each of several observers."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def event(self, name: str, /, **fields: Any) -> None:
        for observer in self._observers:
            observer.event(name, **fields)
