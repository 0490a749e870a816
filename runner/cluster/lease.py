"""The leases this worker holds, each with a deadline on its own monotonic clock.

The database judges every lease by its own clock and answers with the seconds left; the worker
counts them from the moment it *asked* (before the answer, so its deadline is never later than
the database's), on ``time.monotonic``, which no clock change moves and which goes on while the
process is stopped (SIGSTOP): a worker that wakes past its lease finds it lapsed.

- ``guard`` gives a write of a lane its (owner, fence), or raises ``LaneLostError``;
- ``gate`` lets an item's request leave only while the lease has more than the margin left
  (the request timeout): short of it, it waits for the next renewal, and a lease that ends
  meanwhile is lost;
- ``renewed`` takes a renewal's answer: a lane missing from it is lost (``on_lost``). Claims
  and renewals are made one at a time, so a lane granted before a renewal was asked is in its
  answer if it is still this worker's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runner.errors import LaneLostError
from runner.journal.base import ItemRef
from runner.journal.pglanes import Grant

Lane = tuple[str, str, str]  # run, site, account


@dataclass
class Lease:
    lane: Lane
    fence: int
    rows: int
    deadline: float  # monotonic
    granted_at: float = 0.0  # monotonic, when the claim that granted it was asked
    lost: str | None = None  # why, once lost
    renewed: asyncio.Event = field(default_factory=asyncio.Event)


class LeaseBook:
    def __init__(self, owner: str, *, margin_s: float,
                 on_lost: Callable[[Lease], None] = lambda lease: None,
                 clock: Callable[[], float] = time.monotonic):
        self.owner = owner
        self.margin_s = margin_s
        self.on_lost = on_lost
        self.clock = clock
        self._leases: dict[Lane, Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def held(self) -> list[Lease]:
        return list(self._leases.values())

    def add(self, grant: Grant, asked_at: float) -> Lease:
        lease = Lease(grant.lane, grant.fence, grant.rows, asked_at + grant.left_s,
                      granted_at=asked_at)
        self._leases[grant.lane] = lease
        return lease

    def drop(self, lane: Lane) -> None:
        self._leases.pop(lane, None)

    def left(self, lease: Lease) -> float:
        return lease.deadline - self.clock()

    def lose(self, lease: Lease, why: str) -> None:
        if lease.lost is None:
            lease.lost = why
            lease.renewed.set()  # a gate waiting on it wakes to find it lost
            self.on_lost(lease)  # the worker reports it (runner.lane.lost)

    def _live(self, lane: Lane) -> Lease:
        lease = self._leases.get(lane)
        if lease is None:
            raise LaneLostError(*lane, "this worker does not hold it")
        if lease.lost is None and self.left(lease) <= 0:
            self.lose(lease, "its lease ended before it could be renewed")
        if lease.lost is not None:
            raise LaneLostError(*lane, lease.lost)
        return lease

    def guard(self, run_id: str, site: str, account_id: str) -> tuple[str, int]:
        return (self.owner, self._live((run_id, site, account_id)).fence)

    async def gate(self, run_id: str, item: ItemRef) -> None:
        lease = self._live((run_id, item.site, item.account_id))
        while self.left(lease) <= self.margin_s:
            lease.renewed.clear()
            wait = self.left(lease)
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(wait):
                    await lease.renewed.wait()
            except TimeoutError:
                break
            if lease.lost is not None:
                break
        self._live(lease.lane)
        if self.left(lease) <= self.margin_s:
            self.lose(lease, "its lease was not renewed in time to send")
            raise LaneLostError(*lease.lane, lease.lost or "")

    def last_check(self, run_id: str, item: ItemRef) -> None:
        """As a request's bytes are about to leave: raise ``LaneLostError`` if the lease has no
        longer the margin left (the process was stopped since ``gate``)."""
        lease = self._live((run_id, item.site, item.account_id))
        if self.left(lease) <= self.margin_s:
            self.lose(lease, "its lease ran short while the request was about to leave")
            raise LaneLostError(*lease.lane, lease.lost or "")

    def renewed(self, answer: Iterable[tuple[Lane, int, float]], asked_at: float) -> None:
        got = {lane: (fence, left) for lane, fence, left in answer}
        for lease in list(self._leases.values()):
            if lease.lost is not None or lease.granted_at >= asked_at:
                continue  # granted after the renewal was asked: not in its answer yet
            if lease.lane in got and got[lease.lane][0] == lease.fence:
                lease.deadline = asked_at + got[lease.lane][1]
                lease.renewed.set()
            else:
                self.lose(lease, "the database no longer counts it as this worker's")

    def expire(self) -> None:
        """Lose every lease whose deadline passed (the database could not be reached)."""
        for lease in list(self._leases.values()):
            if lease.lost is None and self.left(lease) <= 0:
                self.lose(lease, "its lease ended before it could be renewed")
