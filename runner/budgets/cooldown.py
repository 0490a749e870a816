"""Scoped cooldowns: after a 429, hold back only the scope that was limited, until a time.

A request is held by its narrowest scopes (burst key, issue) and by every wider scope above
them (its site, its tenant's quota, the app-wide quota): ``wait`` returns once none of them is
cooling down. A block only ever lengthens (the later ``until`` wins), so a waiter sleeps until
the latest ``until`` it can see and then looks again; no polling loop, no wake-ups to miss.
Blocks expire by themselves; ``resume`` is reported when work next looks at an expired scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.budgets import Clock, SystemClock
from runner.events import Emitter, Observer, Pause, Resume
from runner.jira.ratelimit import Scope, with_parents


class Cooldowns:
    """Scopes paused until a time, shared by every worker of the process."""

    def __init__(self, *, clock: Clock | None = None, observer: Observer | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._until: dict[Scope, tuple[float, str]] = {}

    def block(self, scope: Scope, until: float, reason: str) -> None:
        """Pause ``scope`` until ``until`` (POSIX). An earlier ``until`` than the current one
        changes nothing: two workers hitting the same 429 must not shorten each other's pause."""
        current = self._until.get(scope)
        if current is not None and current[0] >= until:
            return
        self._until[scope] = (until, reason)
        self._emit(Pause(scope=str(scope), reason=reason, until=until))

    def blocked_until(self, scopes: Iterable[Scope]) -> float | None:
        """The latest time any of ``scopes`` (or a parent) is paused until; None if none is."""
        now = self._clock.now()
        latest: float | None = None
        for scope in with_parents(scopes):
            entry = self._until.get(scope)
            if entry is None:
                continue
            if entry[0] <= now:
                del self._until[scope]
                self._emit(Resume(scope=str(scope)))
                continue
            latest = entry[0] if latest is None else max(latest, entry[0])
        return latest

    def active(self) -> dict[Scope, tuple[float, str]]:
        """Every pause not yet expired: scope -> (until, reason)."""
        now = self._clock.now()
        return {s: e for s, e in self._until.items() if e[0] > now}

    async def wait(self, scopes: Iterable[Scope], *, deadline: float | None = None) -> bool:
        """Return True once none of ``scopes`` (nor their parents) is paused.

        Returns False at once, without waiting, when a pause lasts past ``deadline``: the
        caller gives up rather than sleep toward a time it can't use.
        """
        held = with_parents(scopes)  # once, not on every look
        while True:
            until = self.blocked_until(held)
            if until is None:
                return True
            if deadline is not None and until > deadline:
                return False
            await self._clock.sleep(until - self._clock.now())
