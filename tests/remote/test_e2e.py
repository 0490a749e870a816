"""End to end: the sandbox plays Forge for three sites; serve runs each site's nightly job once.

Time is compressed (an hour of Forge's schedule and of every clock involved passes in a real
second) and system tokens live 15 minutes, so the hourly refresh trigger is what keeps the
runs going: a run outlives the token its trigger brought, pauses, and goes on when the next
hourly delivery brings a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from runner.config.configfile import load_config
from runner.events import SystemTokenWaiting
from runner.journal import SqliteJournal
from runner.logs.setup import configure_logging
from runner.remote.nightly import journal_identity
from runner.remote.server import serve_remote
from runner.sandbox.config import Faults, ForgeTrigger
from runner.sandbox.testing import StartSandbox, pattern_account
from tests.fakes import Events
from tests.remote.helpers import (
    ROUTES,
    ScaledClock,
    forge_of,
    forge_sandbox_config,
    write_serve_config,
)

SCALE = 3600.0  # simulated seconds per real second
USERS = 6
SITES = ("acme", "globex", "initech")
REFRESH = ForgeTrigger(key="refresh", path="/forge/refresh", interval="hour", spread_s=120.0)
NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly-sync", interval="day")


@pytest.fixture
def log_file(tmp_path: Path, restore_logging: None) -> Iterator[Path]:
    """Every log line of the test, as JSON, in a file under tmp_path."""
    path = tmp_path / "serve.log"
    with path.open("w") as stream:
        configure_logging(format="json", stream=stream)
        yield path


def write_template(folder: Path) -> Path:
    rows = "\n".join(f'{{"account_id": "{pattern_account(n)}", "team": "t{n}"}}'
                     for n in range(1, USERS + 1))
    (folder / "users.jsonl").write_text(rows + "\n")
    path = folder / "nightly-sync.toml"
    path.write_text("""name = "nightly-sync"
site = "any"
[source]
jsonl = "users.jsonl"
[[actions]]
type = "user.property.set"
key = "nightly-sync"
value = { team = "{team}" }
""")
    return path


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200, url
        return await answer.text()


@pytest.mark.slow
async def test_nightly_sync_across_three_sites(tmp_path: Path, start_sandbox: StartSandbox,
                                               log_file: Path) -> None:
    """Installs on three sites, hourly and nightly triggers (one redelivered, one duplicated),
    tokens expiring mid-run: each site's nightly job ran once and completed, each trigger was
    answered before its job's first mint, and no token is in the journal, logs, files,
    /metrics or the status page."""
    clock = ScaledClock(SCALE)
    template = write_template(tmp_path)
    sandbox = forge_sandbox_config(
        triggers=(REFRESH, NIGHTLY), time_scale=SCALE, system_token_ttl_s=900,
        fit_ttl_s=3600.0, redelivery_delay_s=60.0,
        # Every Jira call takes 60 ms (3.6 simulated minutes): a run of 6 users, one at a
        # time, lasts longer than the 15 minutes its trigger's token lives.
        faults=Faults(latency_ms_min=60.0, latency_ms_max=60.0),
    )
    routes = ROUTES + f"""
[[serve.routes]]
path = "{NIGHTLY.path}"
kind = "job"
job = "{template}"
interval = "day"
"""
    recorder = Events()
    async with start_sandbox(sandbox, clock=clock) as sb:
        config = load_config(write_serve_config(
            tmp_path, sb, routes=routes, concurrency=1,
            serve_extra="token_max_wait_s = 86400.0",
            extra="[retry.jira]\ndeadline_s = 8640000.0\n[retry.mint]\ndeadline_s = 8640000.0",
        ))
        forge = forge_of(sb)
        async with serve_remote(config, clock=clock, observer=recorder) as remote:
            forge.remote_url = remote.url
            for site in SITES:
                (installed,) = await forge.install(site)
                assert installed.status == 200
            forge.start_schedule()
            plain = await forge.trigger(NIGHTLY.key, "acme")
            redelivered = await forge.trigger(NIGHTLY.key, "globex", lose_answers=1)
            duplicated = await forge.trigger(NIGHTLY.key, "initech", duplicate=True)
            outcomes = await remote.desk.wait_for_outcomes(3)
            held = {inst: remote.store.token(inst) for inst in forge.installed.values()}
            pages = {path: await _get(remote.url + path)
                     for path in ("/metrics", "/status", "/status.json", "/status/chart.svg")}

    # Each delivery of the nightly trigger as planned: one plain, one redelivered after a
    # lost answer, one sent twice.
    assert [(d.attempt, d.lost) for d in plain] == [(0, False)]
    assert [(d.attempt, d.lost) for d in redelivered] == [(0, True), (1, False)]
    assert sorted(d.duplicate for d in duplicated) == [False, True]

    # Each site's job ran exactly once, to the end.
    clouds = {site: sb.config.sites[site].cloud_id for site in SITES}
    assert sorted(o.site for o in outcomes) == sorted(clouds.values())
    assert all(o.exit_code == 0 and o.state == "finished" for o in outcomes), outcomes
    async with SqliteJournal(config.runner.journal, create=False) as journal:
        runs = await journal.runs(100)
        for cloud in clouds.values():
            (run,) = [r for r in runs if r.job_path == journal_identity(template, cloud)]
            assert run.counts == {"done": USERS}
    jira = sb.world.parts["jira"]
    for cloud in clouds.values():
        assert jira.site(cloud).user_properties == {
            pattern_account(n): {"nightly-sync": {"team": f"t{n}"}} for n in range(1, USERS + 1)
        }

    # Tokens expired during the runs and fresh ones from the hourly trigger took over.
    assert recorder.of(SystemTokenWaiting), "no run outlived its token"
    refreshes = [d for d in forge.deliveries if d.what == REFRESH.key and d.status == 200]
    assert {d.site for d in refreshes} == set(SITES)
    assert len(refreshes) >= 2 * len(SITES)
    for token in held.values():
        assert token is not None and token.expires_at is not None

    # Forge heard back before the job's first mint, on every site.
    for site, deliveries in (("acme", plain), ("globex", redelivered),
                             ("initech", duplicated)):
        mints = [m.seq for m in forge.mints if m.cloud_id == clouds[site]]
        assert len(mints) >= USERS
        assert min(d.seq for d in deliveries) < min(mints)

    # No system token, FIT or user token anywhere on disk (journal, logs, lock files), nor in
    # what /metrics and the status page answered.
    secrets = [*forge.sent_secrets, *sb.world.user_tokens]
    assert len(secrets) > 3 * USERS
    assert "forge_runner_mints_total" in pages["/metrics"]
    assert forge.installed["acme"] in pages["/status.json"]  # the scan can find things
    for route, text in pages.items():
        leaked = [s for s in secrets if s in text or s[:16] in text]
        assert not leaked, f"{route} holds a token"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [s for s in secrets if s.encode() in data]
            assert not leaked, f"{path.name} holds a token"
    assert log_file.stat().st_size > 0
