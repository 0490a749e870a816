"""The sandbox application: serving on loopback, its two halves, and the /_sandbox/ routes."""

from __future__ import annotations

import dataclasses
import re
import socket
from typing import Any

import aiohttp
import jwt
import pytest

from runner.sandbox.app import RunningSandbox, build_app
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    CLOUD_A,
    CLOUD_B,
    FakeClock,
    StartSandbox,
    make_sandbox_config,
    mint_request,
    workspace_ari,
)


async def _request(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def _system_token(sb: RunningSandbox, body: Any) -> tuple[int, Any]:
    return await _request("POST", sb.url + "/_sandbox/system-token", json=body)


async def _mint(
    sb: RunningSandbox, cloud_id: str, user: str, system_token: str | None = None
) -> dict[str, Any]:
    if system_token is None:
        system_token = (await _system_token(sb, {"environment": "dev"}))[1]["token"]
    headers = {"Authorization": f"Bearer {system_token}"}
    status, answer = await _request(
        "POST", sb.gateway_url, json=mint_request([workspace_ari(cloud_id)], user), headers=headers
    )
    assert status == 200
    result: dict[str, Any] = answer["data"]["offlineUserAuthToken"]
    return result


async def test_serve_on_port_zero_reports_the_chosen_port(sandbox: RunningSandbox) -> None:
    """serve(port=0) listens on a free loopback port and its URLs name that port."""
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", sandbox.url)
    assert match and int(match.group(1)) > 0
    assert sandbox.gateway_url == sandbox.url + "/graphql"
    assert sandbox.jira_base(CLOUD_A) == f"{sandbox.url}/ex/jira/{CLOUD_A}"
    status, _ = await _request("GET", sandbox.url + "/_sandbox/report")
    assert status == 200


async def test_serve_without_port_uses_the_configured_one() -> None:
    """serve(port=None) listens on config.port."""
    from runner.sandbox.app import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = dataclasses.replace(make_sandbox_config(), port=free)
    async with serve(config) as sb:
        assert sb.url == f"http://127.0.0.1:{free}"
        assert (await _request("GET", sb.url + "/_sandbox/report"))[0] == 200


async def test_serve_stops_listening_on_exit(start_sandbox: StartSandbox) -> None:
    """Leaving serve() closes the port: a later request is refused."""
    async with start_sandbox(make_sandbox_config()) as sb:
        url = sb.url
    with pytest.raises(aiohttp.ClientConnectionError):
        await _request("GET", url + "/_sandbox/report")


async def test_each_sandbox_has_its_own_world(start_sandbox: StartSandbox) -> None:
    """Two sandboxes served at once keep separate state."""
    config = make_sandbox_config()
    async with start_sandbox(config) as one, start_sandbox(config) as two:
        assert one.url != two.url
        assert (await _mint(one, CLOUD_A, ACME_ACTIVE[0]))["success"] is True
        assert one.report()["mints"]["accepted"] == {"dev": 1}
        assert two.report()["mints"]["accepted"] == {}


def test_build_app_wires_gateway_jira_and_admin() -> None:
    """build_app serves both gateway paths, the Jira prefix and /_sandbox/, on one World."""
    clock = FakeClock()
    app, world = build_app(make_sandbox_config(), clock=clock)
    assert world.clock is clock
    assert "gateway" in world.parts and "jira" in world.parts
    paths = {getattr(r.resource, "canonical", "") for r in app.router.routes()}
    admin = {"/_sandbox/report", "/_sandbox/system-token"}
    assert {"/graphql", "/gateway/api/graphql", *admin} <= paths
    assert any(p.startswith("/ex/jira/{cloudId}/rest/api/3") for p in paths)


async def test_report_route_is_the_world_report(sandbox: RunningSandbox) -> None:
    """GET /_sandbox/report returns world.report() as JSON: mints accepted and refused show."""
    await _mint(sandbox, CLOUD_A, ACME_ACTIVE[0])
    await _mint(sandbox, CLOUD_B, ACME_DEACTIVATED)
    await _mint(sandbox, CLOUD_A, ACME_DEACTIVATED)
    status, report = await _request("GET", sandbox.url + "/_sandbox/report")
    assert status == 200
    assert report == sandbox.report()
    assert report["mints"]["accepted"] == {"dev": 1}
    assert report["mints"]["refused"] == {"unknown_user": 1, "deactivated": 1}


async def test_admin_system_token_is_accepted_and_lives_ttl_s(sandbox: RunningSandbox) -> None:
    """POST /_sandbox/system-token gives a token of that environment, living ttl_s seconds."""
    status, body = await _system_token(sandbox, {"environment": "noimp", "ttl_s": 90})
    assert status == 200
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["client_id"] == "noimp"
    assert claims["exp"] - claims["iat"] == 90
    # Accepted (no 401); noimp's scopes then refuse the mint itself.
    result = await _mint(sandbox, CLOUD_A, ACME_ACTIVE[0], system_token=body["token"])
    assert result["errors"][0]["message"].startswith("Could not load permissions")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"environment": "prod"}, "sandbox.environments.prod"),
        ({"environment": "dev", "ttl_s": 0}, "ttl_s"),
        ({"environment": "dev", "ttl_s": "60"}, "ttl_s"),
        ({}, "environment"),
        ([], "environment"),
    ],
    ids=["unknown-environment", "zero-ttl", "string-ttl", "no-environment", "not-an-object"],
)
async def test_admin_system_token_refuses_bad_requests(
    sandbox: RunningSandbox, body: Any, says: str
) -> None:
    """A bad system-token request gets 400 with an error naming what is wrong."""
    status, answer = await _system_token(sandbox, body)
    assert status == 400
    assert says in answer["error"]


async def test_minted_token_acts_as_its_user_on_its_site_only(sandbox: RunningSandbox) -> None:
    """A token from the gateway is that user on Jira's /myself for its site, and 401 elsewhere."""
    token = (await _mint(sandbox, CLOUD_A, ACME_ACTIVE[2]))["authToken"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    status, me = await _request("GET", sandbox.jira_base(CLOUD_A) + "/rest/api/3/myself",
                                headers=headers)
    assert status == 200
    assert me["accountId"] == ACME_ACTIVE[2]
    status, _ = await _request("GET", sandbox.jira_base(CLOUD_B) + "/rest/api/3/myself",
                               headers=headers)
    assert status == 401
