"""The workers and lanes the monitor reads from a real PostgreSQL journal: as gauges, as the
page's data, and kept (marked) when the journal can no longer be read; on SQLite, only a note."""

from __future__ import annotations

import functools
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runner.config.configfile import load_config
from runner.events import LaneLeaseLost, LaneTakenOver
from runner.journal import PostgresJournal
from runner.journal import pglanes as lanes
from runner.monitor import Monitor
from runner.monitor.lanes import NO_POSTGRES, LanesReader
from runner.monitor.snapshot import snapshot

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
LEASE_S = 60.0


def _gauges(monitor: Monitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(monitor.metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if not s.name.endswith("_created")
            and ("worker" in s.name or "lane" in s.name or "runs_open" in s.name)}


async def _run_of(journal: PostgresJournal, users: int) -> str:
    handle = await journal.open_run("shared", "/jobs/shared.toml", "fp", "cfg", "text")
    run_id = handle.run_id
    await journal.write(functools.partial(lanes.set_lanes, run_id=run_id,
                                          columns=("account_id",)))
    await journal.write(functools.partial(lanes.add_flows, run_id=run_id,
                                          weights={"acme": 1.0}))
    rows = [(f"row-{u}", u, "acme", f"acct-{u:03d}", 0, {"account_id": f"acct-{u:03d}"})
            for u in range(users)]
    await journal.write(functools.partial(lanes.load_rows, run_id=run_id, rows=rows))
    await journal.write(functools.partial(lanes.set_loaded, run_id=run_id))
    return run_id


async def test_the_journal_s_workers_and_lanes_are_gauges_and_the_page_s_data(
        pg_url: str) -> None:
    """Two workers registered, one holding 2 of a run's 3 lanes and one holding 1: the reader
    of the first counts 2 workers alive, 2 lanes held by this process and 1 by others, 1 run
    open, no worker ID as a label; the page's data lists each worker with host, pid and lanes
    and, for the run, the lanes of each. A closed journal keeps that view, with a note."""
    monitor = Monitor(load_config(CONFIG), process="worker")
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_of(journal, users=3)
        for wid, pid in (("box-1-10-aa", 10), ("box-2-20-bb", 20)):
            await journal.execute(functools.partial(
                lanes.register_worker, worker_id=wid, host=wid[:5], pid=pid, proc_start="1"))
        for wid, n in (("box-1-10-aa", 2), ("box-2-20-bb", 1)):
            got = await journal.execute(functools.partial(
                lanes.claim, worker_id=wid, run_ids=[run_id], n=n, lease_s=LEASE_S))
            assert len(got) == n
        monitor.lanes = LanesReader(journal, LEASE_S, me=lambda: "box-1-10-aa")
        await monitor.refresh()
        gauges = _gauges(monitor)
        data = snapshot(monitor)["cluster"]
    assert gauges == {
        ("forge_runner_workers_alive", ()): 2,
        ("forge_runner_runs_open", ()): 1,
        ("forge_runner_lanes_held", (("holder", "this_process"), ("run", run_id))): 2,
        ("forge_runner_lanes_held", (("holder", "other_processes"), ("run", run_id))): 1,
        ("forge_runner_lane_takeovers_total", ()): 0,
        ("forge_runner_lanes_lost_total", ()): 0,
    }
    assert data["shared"] is True and data["note"] is None
    assert [(w["host"], w["pid"], w["lanes_held"], w["this_process"])
            for w in data["workers"]] == [("box-1", 10, 2, True), ("box-2", 20, 1, False)]
    (run,) = data["runs"]
    assert run["run_id"] == run_id and run["open"] == 3
    assert [(h["worker"], h["host"], h["pid"], h["lanes"]) for h in run["held"]] == [
        ("box-1-10-aa", "box-1", 10, 2), ("box-2-20-bb", "box-2", 20, 1)]

    await monitor.refresh()  # the journal is closed now
    kept = snapshot(monitor)["cluster"]
    assert kept["note"] == "the journal could not be read (JournalError)"
    assert kept["workers"] == data["workers"] and kept["runs"] == data["runs"]
    assert _gauges(monitor)[("forge_runner_workers_alive", ())] == 2


def test_lane_events_count_takeovers_and_losses() -> None:
    """Each lane.taken_over and lane.lost event a worker reports adds one to its counter."""
    monitor = Monitor(load_config(CONFIG), process="worker")
    for fence in (2, 3):
        monitor.event(LaneTakenOver(run="r-1", site="acme", account="a", fence=fence))
    monitor.event(LaneLeaseLost(run="r-1", site="acme", account="a", fence=3, why="lapsed"))
    gauges = _gauges(monitor)
    assert gauges[("forge_runner_lane_takeovers_total", ())] == 2
    assert gauges[("forge_runner_lanes_lost_total", ())] == 1


def test_on_sqlite_the_page_says_workers_need_postgresql() -> None:
    """Without a PostgreSQL journal there is no workers gauge, and the page's data says why."""
    monitor = Monitor(load_config(CONFIG), process="run")
    assert ("forge_runner_workers_alive", ()) not in _gauges(monitor)
    assert snapshot(monitor)["cluster"] == {"shared": False, "note": NO_POSTGRES,
                                            "workers": [], "runs": []}
