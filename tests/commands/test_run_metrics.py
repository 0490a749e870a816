"""``run --metrics-port``: /metrics and the status page of a run, through the real command."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import Faults
from runner.sandbox.testing import MIGRATION_ACTIONS
from tests.e2e.harness import ArrivalWatch, Rehearsal, account, bulk_sandbox_config

pytestmark = pytest.mark.slow


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    # Each Jira call takes 20 ms: the run goes on while the test reads its pages.
    faults = Faults(latency_ms_min=20.0, latency_ms_max=20.0)
    async with serve(bulk_sandbox_config(5, faults=faults), port=0) as running:
        yield running


def _rows(count: int) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{n:03d}", "account_id": account(n % 10),
             "issue": f"MIG-{n % 5 + 1}"} for n in range(count)]


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200, url
        return await answer.text()


async def test_run_serves_metrics_and_status_while_it_goes_on(
        tmp_path: Path, sandbox: RunningSandbox) -> None:
    """With --metrics-port 0 the run says where it serves; mid-run /metrics parses and counts
    the run's items, /status.json shows the run going on with its plan's bound, and neither
    holds a token; the run then ends as usual."""
    rehearsal = Rehearsal.start(tmp_path, sandbox, concurrency=2)
    job = rehearsal.write_job("watched", _rows(150), MIGRATION_ACTIONS)
    watch = ArrivalWatch.install(sandbox)
    midway = watch.event_after(40)
    process = await rehearsal.spawn("run", job, "--metrics-port", "0")
    await midway.wait()
    printed = process.out_path.read_text() + process.err_path.read_text()
    found = re.search(r"metrics: (http://127\.0\.0\.1:\d+)/metrics, status page "
                      r"http://127\.0\.0\.1:\d+/status", printed)
    assert found, printed
    base = found.group(1)
    metrics = await _get(f"{base}/metrics")
    status = await _get(f"{base}/status.json")
    page = await _get(f"{base}/status")
    ended = await process.wait()
    assert ended.code == 0, ended.text

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    done = [s for s in families["forge_runner_items"].samples
            if s.name.endswith("_total") and s.labels["state"] == "done"]
    assert done and done[0].labels["job"] == "watched" and done[0].value >= 1
    (running,) = families["forge_runner_run_running"].samples
    assert running.value == 1
    (run,) = json.loads(status)["runs"]
    assert run["state"] == "running" and run["total"] == 300 and run["bound_s"] > 0
    assert 0 < run["finished"] < 300
    assert "forge-runner status" in page

    secrets = [*sandbox.world.user_tokens, rehearsal.system_token,
               rehearsal.system_token.rsplit(".", 1)[1]]
    assert len(secrets) > 3
    for name, text in (("/metrics", metrics), ("/status.json", status)):
        leaked = [n for n, s in enumerate(secrets) if s in text or s[:16] in text]
        assert not leaked, f"token #{leaked[0]} in {name}"


async def test_a_metrics_port_in_use_stops_the_run_before_it_opens(
        tmp_path: Path, sandbox: RunningSandbox) -> None:
    """A --metrics-port that is taken exits 2 with one line naming it; no run is opened and
    nothing is sent."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    job = rehearsal.write_job("taken", _rows(3), MIGRATION_ACTIONS)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ended = await rehearsal.cli("run", job, "--metrics-port", str(port))
    assert ended.code == 2, ended.text
    lines = ended.err.strip().splitlines()
    assert len(lines) == 1 and "--metrics-port" in lines[0] and "in use" in lines[0], lines
    assert "Traceback" not in ended.text
    assert sum(sandbox.world.jira_calls.values()) == 0
    status = await rehearsal.cli("status", "--format", "json")
    assert "taken" not in status.out


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
async def test_a_metrics_port_that_is_no_port_is_refused(
        tmp_path: Path, sandbox: RunningSandbox, port: str) -> None:
    """--metrics-port takes 0 to 65535: anything else exits 2 with argparse's line, nothing
    sent."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    job = rehearsal.write_job("badport", _rows(3), MIGRATION_ACTIONS)
    ended = await rehearsal.cli("run", job, "--metrics-port", port)
    assert ended.code == 2, ended.text
    assert "--metrics-port" in ended.err and "Traceback" not in ended.text
    assert sum(sandbox.world.jira_calls.values()) == 0
