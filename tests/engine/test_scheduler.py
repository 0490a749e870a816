"""The fair scheduler: weighted round-robin across sites, a fair share of workers per site."""

from __future__ import annotations

import asyncio
from collections import Counter

from runner.engine.scheduler import FairScheduler
from tests.fakes import all_tasks_blocked


async def test_round_robin_across_sites() -> None:
    """With equal weights and work ready on both sites, units alternate between them."""
    sched: FairScheduler[int] = FairScheduler({"a": 1, "b": 1}, workers=100, buffer_per_site=10)
    for i in range(4):
        await sched.put("a", i)
        await sched.put("b", i)
    order = []
    for _ in range(8):
        got = await sched.next()
        assert got is not None
        order.append(got[0])
        sched.done(got[0])
    assert order == ["a", "b"] * 4


async def test_weights_set_the_shares() -> None:
    """A site weighted 3 gets three units for each one of a site weighted 1."""
    sched: FairScheduler[int] = FairScheduler({"a": 3, "b": 1}, workers=100, buffer_per_site=40)
    for i in range(40):
        await sched.put("a", i)
        await sched.put("b", i)
    taken: Counter[str] = Counter()
    for _ in range(40):
        got = await sched.next()
        assert got is not None
        taken[got[0]] += 1
        sched.done(got[0])
    assert taken == Counter({"a": 30, "b": 10})


async def test_busy_site_holds_at_most_its_share() -> None:
    """A site whose units never finish holds no more than its share while another has work."""
    sched: FairScheduler[int] = FairScheduler({"slow": 1, "fast": 1}, workers=4)
    for i in range(10):
        await sched.put("slow", i)
        await sched.put("fast", i)
    held: Counter[str] = Counter()
    # Take 4 units and never finish the slow ones: the rest must go to the fast site.
    for _ in range(4):
        got = await sched.next()
        assert got is not None
        held[got[0]] += 1
    assert held["slow"] <= 2
    # Finishing fast units keeps handing out fast work while slow stays at its share.
    for _ in range(6):
        sched.done("fast")
        got = await sched.next()
        assert got is not None
        assert got[0] == "fast"
    assert sched.in_flight("slow") == 2


async def test_single_site_gets_every_worker() -> None:
    """When only one site has work, it is not held to a share."""
    sched: FairScheduler[int] = FairScheduler({"a": 1, "b": 1}, workers=4)
    sched.close("b")
    for i in range(4):
        await sched.put("a", i)
    for _ in range(4):
        got = await sched.next()
        assert got is not None and got[0] == "a"


async def test_a_site_still_loading_keeps_its_share() -> None:
    """While one site's producer has not looked at its first chunk, the other site's ready
    units take no more than their share: the rest of the workers wait for the late site."""
    sched: FairScheduler[int] = FairScheduler({"early": 1, "late": 1}, workers=4)
    for i in range(10):
        await sched.put("early", i)
    for _ in range(2):
        got = await sched.next()
        assert got is not None and got[0] == "early"
    third = asyncio.ensure_future(sched.next())
    await all_tasks_blocked()
    assert not third.done()
    await sched.put("late", 0)
    assert await third == ("late", 0)


async def test_a_site_loaded_without_work_frees_its_share() -> None:
    """A site whose first chunk had nothing to do (all done on a resume) holds no workers
    back: the worker waiting for it gets the other site's unit."""
    sched: FairScheduler[int] = FairScheduler({"busy": 1, "done": 1}, workers=4)
    for i in range(10):
        await sched.put("busy", i)
    for _ in range(2):
        assert await sched.next() is not None
    third = asyncio.ensure_future(sched.next())
    await all_tasks_blocked()
    assert not third.done()
    sched.primed("done")
    got = await third
    assert got is not None and got[0] == "busy"


async def test_next_returns_none_when_all_closed() -> None:
    """Workers waiting for work are released with None once every producer has closed."""
    sched: FairScheduler[int] = FairScheduler({"a": 1}, workers=2)
    results = []

    async def worker() -> None:
        results.append(await sched.next())

    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker())
        tg.create_task(worker())
        await all_tasks_blocked()
        await sched.put("a", 7)
        sched.close("a")
    assert sorted(results, key=str) == [("a", 7), None]


async def test_full_buffer_blocks_producer_until_taken() -> None:
    """A producer waits while its site's buffer is full and goes on once a unit is taken."""
    sched: FairScheduler[int] = FairScheduler({"a": 1}, workers=1, buffer_per_site=2)
    await sched.put("a", 1)
    await sched.put("a", 2)
    added = asyncio.Event()

    async def producer() -> None:
        await sched.put("a", 3)
        added.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        await all_tasks_blocked()
        assert not added.is_set()
        assert await sched.next() == ("a", 1)
        await added.wait()


async def test_stop_releases_workers_and_producers() -> None:
    """stop() hands out nothing more: waiting workers get None, blocked producers return."""
    sched: FairScheduler[int] = FairScheduler({"a": 1}, workers=1, buffer_per_site=1)
    await sched.put("a", 1)
    got = []

    async def producer() -> None:
        await sched.put("a", 2)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        await all_tasks_blocked()
        sched.stop()
    got.append(await sched.next())
    assert got == [None]
