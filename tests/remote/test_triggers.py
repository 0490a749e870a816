"""Job triggers: answered first, one run per installation and interval, no overlapping runs."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from runner.config.configfile import Config, load_config
from runner.journal import SqliteJournal
from runner.remote.nightly import journal_identity
from runner.remote.server import RunningRemote, serve_remote
from runner.sandbox.config import ForgeTrigger
from runner.sandbox.forge import ForgePlatform
from runner.sandbox.testing import StartSandbox, pattern_account
from tests.remote.helpers import ROUTES, forge_of, forge_sandbox_config, write_serve_config

NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly", interval="day")


def write_template(folder: Path, users: int) -> Path:
    """A nightly template: one user property per user (pattern users are active everywhere)."""
    rows = ", ".join(f'{{account_id = "{pattern_account(n)}", team = "t{n}"}}'
                     for n in range(1, users + 1))
    path = folder / "nightly.toml"
    path.write_text(f"""name = "nightly"
site = "placeholder"
[source]
rows = [{rows}]
[[actions]]
type = "user.property.set"
key = "nightly-sync"
value = {{ team = "{{team}}" }}
""")
    return path


def job_routes(template: Path, window: str = "") -> str:
    return ROUTES + f"""
[[serve.routes]]
path = "/forge/nightly"
kind = "job"
job = "{template}"
interval = "day"
{window}
"""


async def post_trigger(forge: ForgePlatform, remote: RunningRemote, site: str) -> dict[str, object]:
    """One delivery of the nightly trigger, sent by hand to read the remote's answer."""
    headers = {"Authorization": f"Bearer {forge.fit(site, NIGHTLY.key)}",
               "x-forge-oauth-system": forge.system_token()}
    async with (
        aiohttp.ClientSession() as session,
        session.post(remote.url + NIGHTLY.path, json={}, headers=headers) as resp,
    ):
        assert resp.status == 200
        answer: dict[str, object] = await resp.json()
        return answer


async def runs_of(config: Config, template: Path, site: str) -> list[str]:
    identity = journal_identity(template, site)
    async with SqliteJournal(config.runner.journal, create=False) as journal:
        return [r.run_id for r in await journal.runs(100) if r.job_path == identity]


async def test_redelivery_and_duplicate_start_one_run(tmp_path: Path,
                                                      start_sandbox: StartSandbox) -> None:
    """A lost answer (redelivered) and a duplicate of one trigger start one run, which is
    answered before the job's first mint reaches the gateway."""
    template = write_template(tmp_path, users=3)
    sandbox = forge_sandbox_config(triggers=(NIGHTLY,), redelivery_delay_s=0.05)
    async with start_sandbox(sandbox) as sb:
        config = load_config(write_serve_config(tmp_path, sb, routes=job_routes(template)))
        async with serve_remote(config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            deliveries = await forge.trigger(NIGHTLY.key, "acme", duplicate=True,
                                             lose_answers=1)
            (outcome,) = await remote.desk.wait_for_outcomes(1)
        # (attempt, duplicate copy, answer lost): the first answer lost, hence a redelivery;
        # and a duplicate of the first delivery. The remote answered 200 to each.
        assert sorted((d.attempt, d.duplicate, d.lost) for d in deliveries) == [
            (0, False, True), (0, True, False), (1, False, False)
        ]
        assert {d.status for d in deliveries} == {200}
        assert outcome.exit_code == 0 and outcome.state == "finished"
        assert remote.desk.outcomes == [outcome]
        cloud = sb.config.sites["acme"].cloud_id
        assert len(await runs_of(config, template, cloud)) == 1
        first_answer = min(d.seq for d in deliveries)
        mints = [m.seq for m in forge.mints if m.cloud_id == cloud]
        assert len(mints) == 3
        assert first_answer < min(mints)
        site_state = sb.world.parts["jira"].site(cloud)
        assert site_state.user_properties == {
            pattern_account(n): {"nightly-sync": {"team": f"t{n}"}} for n in (1, 2, 3)
        }


async def test_overlapping_trigger_is_not_started_twice(tmp_path: Path,
                                                        start_sandbox: StartSandbox) -> None:
    """A trigger of the next interval while the run is still going: answered 'running', no
    second run; the cut-short run is resumed by the next process's trigger, not restarted."""
    template = write_template(tmp_path, users=2)
    routes = job_routes(template, window="dedup_window_s = 0.001")
    async with start_sandbox(forge_sandbox_config(triggers=(NIGHTLY,))) as sb:
        # One mint a minute: the second user's mint keeps the run going.
        path = write_serve_config(tmp_path, sb, routes=routes, mint_limit=1,
                                  mint_window_s=60.0)
        config = load_config(path)
        forge = forge_of(sb)
        async with serve_remote(config) as remote:
            forge.remote_url = remote.url
            first = await post_trigger(forge, remote, "globex")
            second = await post_trigger(forge, remote, "globex")
            assert (first["run"], second["run"]) == ("accepted", "running")
        (cut_short,) = remote.desk.outcomes
        assert cut_short.state == "interrupted"
        cloud = sb.config.sites["globex"].cloud_id
        assert await runs_of(config, template, cloud) == [cut_short.run_id]

        # The same interval, in a new process: the cut-short run is resumed.
        config = load_config(write_serve_config(tmp_path, sb, routes=job_routes(template)))
        async with serve_remote(config) as remote:
            forge.remote_url = remote.url
            assert (await post_trigger(forge, remote, "globex"))["run"] == "accepted"
            (resumed,) = await remote.desk.wait_for_outcomes(1)
        assert resumed.run_id == cut_short.run_id and resumed.resumed
        assert resumed.exit_code == 0

        # And once it finished, a late redelivery in a third process starts nothing.
        async with serve_remote(config) as remote:
            forge.remote_url = remote.url
            assert (await post_trigger(forge, remote, "globex"))["run"] == "accepted"
            (late,) = await remote.desk.wait_for_outcomes(1)
        assert late.state == "already done" and late.run_id is None
        assert await runs_of(config, template, cloud) == [cut_short.run_id]


async def test_new_installation_becomes_a_site(tmp_path: Path,
                                               start_sandbox: StartSandbox) -> None:
    """An installed event from an unknown installation: kept with its cloud ID and API base
    URL; its token is the one the event carried."""
    async with start_sandbox(forge_sandbox_config()) as sb:
        config = load_config(write_serve_config(tmp_path, sb))
        async with serve_remote(config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            (delivery,) = await forge.install("initech")
            assert delivery.status == 200
            inst = forge.installation_id("initech")
            seen = remote.store.installation(inst)
            assert seen is not None and seen.cloud_id == sb.config.sites["initech"].cloud_id
            assert seen.api_base_url == sb.jira_base(seen.cloud_id)
            assert remote.store.token(inst) is not None
            # A reinstall is a new installation of the same site.
            await forge.install("initech")
            assert forge.installation_id("initech") != inst
            assert len(remote.store.installations()) == 2
