"""Jira answers that say less than they seem to, through the real command: a create answered
with an HTML page, a text error body echoing the caller's token past the cut, a Retry-After past
the run's deadline. A proxy in front of the sandbox's Jira gives each answer for one issue; the
run, its journal and its report say what became of each item, and no token leaks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import Rehearsal, account, bulk_sandbox_config, run_id_of

COMMENT = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "Migrated {legacy_id}"\n'
HTML = "<html><body>Service temporarily unavailable (proxy)</body></html>"

# The proxy's own answer to a request (given its path and bearer token), or None to forward it.
Answer = Callable[[str, str], web.Response | None]


@asynccontextmanager
async def jira_proxy(target: str, answer: Answer) -> AsyncIterator[str]:
    """A loopback proxy to the sandbox at ``target``; its URL."""
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            own = answer(request.path, token)
            if own is not None:
                return own
            sent = {k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")}
            async with session.request(request.method, target + request.path_qs,
                                       data=await request.read() or None,
                                       headers=sent) as got:
                return web.Response(status=got.status, body=await got.read(),
                                    headers={k: v for k, v in got.headers.items()
                                             if k.lower() not in ("content-length",
                                                                  "transfer-encoding",
                                                                  "content-encoding",
                                                                  "connection", "date",
                                                                  "server")})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


def _answer(path: str, token: str) -> web.Response | None:
    if "/issue/MIG-1/comment" in path:
        return web.Response(status=200, text=HTML, content_type="text/html")
    if "/issue/MIG-2/comment" in path:
        # The caller's token echoed across the 300th character of a plain-text error body.
        return web.Response(status=400, text="e" * 280 + token + " was not accepted here",
                            content_type="text/plain")
    if "/issue/MIG-3/comment" in path:
        return web.json_response({"errorMessages": ["Rate limit exceeded."]}, status=429,
                                 headers={"Retry-After": "3600",
                                          "RateLimit-Reason": "jira-per-issue-on-write"})
    return None


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(5), port=0) as running:
        yield running


async def test_html_2xx_echoed_token_and_retry_after_past_the_deadline(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """Through `forge-runner run`: a comment answered 200 with HTML is uncertain (sent once,
    not taken for done); a 400 whose text body holds the caller's token across the 300-character
    cut fails with the token redacted (none of it in the output, the journal or the report);
    a 429 asking for an hour with a two-minute deadline fails at once with reason deadline,
    saying how long the server asked for; the other row is done; exit 1."""
    tokens: set[str] = set()
    paths: Counter[str] = Counter()

    def answer(path: str, token: str) -> web.Response | None:
        tokens.add(token)
        paths[path.rsplit("/rest/api/3", 1)[-1]] += 1
        return _answer(path, token)

    async with jira_proxy(sandbox.url, answer) as proxy:
        rehearsal = Rehearsal.start(tmp_path, sandbox)
        config = rehearsal.config_path.read_text()
        rehearsal.config_path.write_text(config.replace(
            f'api_base_url = "{sandbox.jira_base(CLOUD_A)}"',
            f'api_base_url = "{proxy}/ex/jira/{CLOUD_A}"'))
        rows = [{"legacy_id": f"L{n}", "account_id": account(1), "issue": f"MIG-{n}"}
                for n in range(1, 5)]
        ran = await rehearsal.cli("run", rehearsal.write_job("answers", rows, COMMENT),
                                  "--report", "report.json")
        run_id = run_id_of(ran)
        reported = await rehearsal.cli("report", run_id, "--format", "csv")

    assert ran.code == 1, ran.text
    assert "Traceback" not in ran.text
    assert ran.out.rstrip().splitlines()[-1].startswith(
        f"run {run_id}: 1 done, 2 failed, 1 uncertain: some items failed (exit 1)")
    items = {i["row_key"]: i for i in json.loads((tmp_path / "report.json").read_text())["items"]}
    assert set(items) == {"L1", "L2", "L3"}
    assert (items["L1"]["state"], items["L1"]["reason"], items["L1"]["message"]) == (
        "uncertain", "outcome-unknown", "http 200 with an answer that is not JSON")
    assert (items["L2"]["state"], items["L2"]["reason"]) == ("failed", "http-400")
    assert items["L2"]["message"].endswith("e[REDACTED] was not a")
    assert (items["L3"]["state"], items["L3"]["reason"], items["L3"]["message"]) == (
        "failed", "deadline",
        "the server asked to wait 3600 s (Retry-After), past the run's deadline")
    # Each comment was sent once: the HTML-answered create was not sent again, the 400 is
    # permanent and the 429 past the deadline is not waited out.
    assert paths == {f"/issue/MIG-{n}/comment": 1 for n in range(1, 5)}
    assert len(rehearsal.jira.issue(CLOUD_A, "MIG-4").comments) == 1  # type: ignore[union-attr]

    (token,) = tokens - {""}
    texts = [ran.out, ran.err, reported.out, reported.err,
             *(data.decode("latin-1") for data in rehearsal.files().values())]
    assert not [t for t in texts if token[:12] in t], "a piece of the user's token leaked"
