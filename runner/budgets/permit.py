"""One answer to "may this request go now?": a permit per Jira call.

``async with pacer.permit(site, request, deadline=...) as p:`` returns once every pause a 429
set on the request's scopes is over (its burst key, its issue, its site, its tenant's quota,
the app's quota: ``runner.budgets.cooldown``) and, for a pacer with budgets, once the budgets
have given it their share. Leaving the block gives that share back unless ``p.spent()`` said
the request went on the wire: a request dropped while waiting (a drain, a journal failure)
never costs capacity. A pause lasting past ``deadline`` raises ``PastDeadline`` at once.

A 429 reaches the pacer once, through ``observe(..., pause=...)``: the pacer pauses the scope
that was limited, and (``JiraPacer``) slows the budget behind it. ``Unpaced`` is the pacer
without budgets: it honours 429 pauses and nothing else, for tests about the executor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from runner.budgets import Clock
from runner.budgets.cooldown import Cooldowns
from runner.events import Observer
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import RateLimitInfo, Scope, request_scopes, with_parents


class PastDeadline(Exception):
    """A pause on the request's scopes lasts past its deadline: it will not be sent in time."""

    def __init__(self, until: float) -> None:
        super().__init__(f"paused until {until:.3f}, past the deadline")
        self.until = until


@dataclass(frozen=True)
class Pause:
    """A 429's answer: hold ``scope`` (and everything beneath it) until ``until`` (POSIX)."""

    scope: Scope
    until: float
    reason: str


class Permit:
    """One request's leave to go. ``spent()``: it went on the wire, so what it took stays
    taken; otherwise leaving the ``permit`` block gives it back."""

    def __init__(self) -> None:
        self._spent = False

    def spent(self) -> None:
        self._spent = True

    @property
    def is_spent(self) -> bool:
        return self._spent


class Pacer(Protocol):
    """What the call executor asks before each send and tells after it."""

    def permit(
        self, site: str, request: JiraRequest, *, deadline: float | None = None
    ) -> AbstractAsyncContextManager[Permit]: ...

    def observe(
        self,
        site: str,
        request: JiraRequest,
        status: int | None,
        info: RateLimitInfo | None = None,
        *,
        actual_cost: int | None = None,
        pause: Pause | None = None,
    ) -> None: ...


def held_scopes(site: str, request: JiraRequest) -> frozenset[Scope]:
    """Every scope whose pause holds ``request`` back: its own and their parents."""
    return with_parents(request_scopes(site, request.method, request.template, request.issue))


async def wait_out(pauses: Cooldowns, scopes: frozenset[Scope], deadline: float | None) -> None:
    """Return once none of ``scopes`` is paused; ``PastDeadline`` if a pause outlasts it."""
    if not await pauses.wait(scopes, deadline=deadline):
        raise PastDeadline(pauses.blocked_until(scopes) or 0.0)


class Unpaced:
    """A pacer with no budgets: every request may go at once, save while a 429 pauses it."""

    def __init__(self, *, clock: Clock | None = None, observer: Observer | None = None) -> None:
        self.pauses = Cooldowns(clock=clock, observer=observer)

    @asynccontextmanager
    async def permit(
        self, site: str, request: JiraRequest, *, deadline: float | None = None
    ) -> AsyncIterator[Permit]:
        await wait_out(self.pauses, held_scopes(site, request), deadline)
        yield Permit()

    def observe(
        self,
        site: str,
        request: JiraRequest,
        status: int | None,
        info: RateLimitInfo | None = None,
        *,
        actual_cost: int | None = None,
        pause: Pause | None = None,
    ) -> None:
        del site, request, status, info, actual_cost  # no budget to teach
        if pause is not None:
            self.pauses.block(pause.scope, pause.until, pause.reason)
