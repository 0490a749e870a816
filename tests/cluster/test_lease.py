"""The lease book on a clock the test moves (time is the subject): a request leaves only with
the margin left, waits for a renewal short of it, and a lane that ends or is missing from a
renewal is lost for good."""

from __future__ import annotations

import asyncio

import pytest

from runner.cluster.lease import Lease, LeaseBook
from runner.errors import LaneLostError
from runner.journal.base import ItemRef
from runner.journal.pglanes import Grant

LANE = ("r-1", "acme", "acct-1")
ITEM = ItemRef("row-1", 0, "acme", "acct-1", "comment.add")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _book(clock: Clock, lost: list[Lease] | None = None) -> LeaseBook:
    book = LeaseBook("w-1", margin_s=2.0, clock=clock,
                     on_lost=(lost.append if lost is not None else lambda lease: None))
    book.add(Grant(*LANE, fence=3, rows=1, left_s=10.0), asked_at=clock())
    return book


async def test_a_write_carries_the_fence_until_the_lease_ends() -> None:
    """guard gives (owner, fence) while the lease lasts, LaneLostError once its deadline passed
    (counted from when the claim was asked), and the lane stays lost."""
    clock = Clock()
    lost: list[Lease] = []
    book = _book(clock, lost)
    assert book.guard(*LANE) == ("w-1", 3)
    clock.t += 10.0
    with pytest.raises(LaneLostError):
        book.guard(*LANE)
    assert [lease.lane for lease in lost] == [LANE]
    book.renewed([(LANE, 3, 10.0)], asked_at=clock())
    with pytest.raises(LaneLostError):
        book.guard(*LANE)


async def test_a_request_short_of_the_margin_waits_for_the_renewal() -> None:
    """With less than the margin left, the gate waits; a renewal under the same fence lets it
    through; the same wait with no renewal ends in LaneLostError."""
    clock = Clock()
    book = _book(clock)
    await book.gate("r-1", ITEM)  # 10 s left: at once
    clock.t += 9.0
    waiting = asyncio.create_task(book.gate("r-1", ITEM))
    await asyncio.sleep(0)
    assert not waiting.done()
    book.renewed([(LANE, 3, 10.0)], asked_at=clock())
    await asyncio.wait_for(waiting, 1.0)

    other = LeaseBook("w-2", margin_s=2.0, clock=clock)
    other.add(Grant(*LANE, fence=4, rows=1, left_s=0.05), asked_at=clock())
    with pytest.raises(LaneLostError):
        await other.gate("r-1", ITEM)  # the real clock's 50 ms pass; this clock never moves


async def test_a_renewal_without_the_lane_or_under_another_fence_loses_it() -> None:
    """A renewal whose answer lacks the lane, or names it under another fence, loses it; a
    lane granted after the renewal was asked is left alone."""
    clock = Clock()
    book = _book(clock)
    book.renewed([(LANE, 4, 10.0)], asked_at=clock() + 1)
    with pytest.raises(LaneLostError):
        book.guard(*LANE)
    later = LeaseBook("w-1", margin_s=2.0, clock=clock)
    later.add(Grant(*LANE, fence=5, rows=1, left_s=10.0), asked_at=clock())
    later.renewed([], asked_at=clock() - 1)
    assert later.guard(*LANE) == ("w-1", 5)


async def test_the_last_check_stops_a_request_of_a_process_woken_past_its_lease() -> None:
    """Passed the gate, then stopped for longer than the lease: the check made as the
    connection is ready raises LaneLostError."""
    clock = Clock()
    book = _book(clock)
    await book.gate("r-1", ITEM)
    book.last_check("r-1", ITEM)
    clock.t += 30.0
    with pytest.raises(LaneLostError):
        book.last_check("r-1", ITEM)
