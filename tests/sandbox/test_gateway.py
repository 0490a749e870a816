"""The sandbox gateway's offlineUserAuthToken over real HTTP: tokens, refusals, the seed thread."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import SandboxEnvironment
from runner.sandbox.gateway import CONTEXT_MESSAGE
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    CLOUD_B,
    GLOBEX_ACTIVE,
    INSTALLATION_A,
    UNKNOWN_ACCOUNT,
    FakeClock,
    StartSandbox,
    make_sandbox_config,
    mint_request,
    pattern_account,
    site_ari,
    workspace_ari,
)


async def post(
    sb: RunningSandbox, body: Any, *, environment: str = "dev", path: str = "/graphql"
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the gateway with a fresh system token of ``environment``."""
    token = issue_system_token(sb.config, environment, now=sb.world.clock())
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sb.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def payload(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["data"]["offlineUserAuthToken"]
    return result


async def test_mint_returns_a_token_bound_to_site_user_and_ttl(sandbox: RunningSandbox) -> None:
    """An active user and the workspace ARI get success, no errors and a token for that user."""
    status, body = await post(sandbox, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0]))
    assert status == 200
    result = payload(body)
    assert result["success"] is True
    assert result["errors"] is None
    assert result["authToken"]["ttl"] == 3600
    bound = sandbox.world.lookup_user_token(result["authToken"]["token"], CLOUD_A)
    assert bound is not None
    assert (bound.account_id, bound.client_id) == (ACME_ACTIVE[0], "dev")
    assert sandbox.world.lookup_user_token(result["authToken"]["token"], CLOUD_B) is None
    mints = sandbox.report()["mints"]
    assert mints["accepted"] == {"dev": 1}
    assert mints["by_user"] == {f"{CLOUD_A} {ACME_ACTIVE[0]}": 1}


async def test_each_mint_returns_a_new_opaque_token(sandbox: RunningSandbox) -> None:
    """Two mints for one user give two different tokens, neither containing the account ID."""
    request = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[1])
    tokens = [payload((await post(sandbox, request))[1])["authToken"]["token"] for _ in range(2)]
    assert tokens[0] != tokens[1]
    assert all(ACME_ACTIVE[1] not in t for t in tokens)


async def test_token_ttl_and_expiry_follow_the_environment(start_sandbox: StartSandbox) -> None:
    """token_ttl_s sets the answered ttl, and the token stops working ttl seconds later."""
    clock = FakeClock()
    config = dataclasses.replace(
        make_sandbox_config(),
        environments={"dev": SandboxEnvironment("dev", client_id="dev", token_ttl_s=120)},
    )
    async with start_sandbox(config, clock=clock) as sb:
        _, body = await post(sb, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0]))
        auth = payload(body)["authToken"]
        assert auth["ttl"] == 120
        clock.advance(119)
        assert sb.world.lookup_user_token(auth["token"], CLOUD_A) is not None
        clock.advance(1)
        assert sb.world.lookup_user_token(auth["token"], CLOUD_A) is None


async def test_pattern_account_is_an_active_user(sandbox: RunningSandbox) -> None:
    """An unlisted account ID matching active_account_pattern is minted for."""
    _, body = await post(sandbox, mint_request([workspace_ari(CLOUD_B)], pattern_account(7)))
    assert payload(body)["success"] is True


@pytest.mark.parametrize(
    ("user", "message", "reason"),
    [
        (ACME_DEACTIVATED, f"User {ACME_DEACTIVATED} is deactivated and cannot be impersonated",
         "deactivated"),
        (ACME_NO_ACCESS, f"User {ACME_NO_ACCESS} does not have access to this app", "no_access"),
        (UNKNOWN_ACCOUNT, f"User {UNKNOWN_ACCOUNT} not found", "unknown_user"),
    ],
)
async def test_user_refusals_are_200_with_their_own_message(
    sandbox: RunningSandbox, user: str, message: str, reason: str
) -> None:
    """Deactivated, no-access and unknown users each get HTTP 200, success false, their text."""
    status, body = await post(sandbox, mint_request([workspace_ari(CLOUD_A)], user))
    assert status == 200
    assert payload(body) == {"success": False, "errors": [{"message": message}], "authToken": None}
    assert sandbox.report()["mints"]["refused"] == {reason: 1}
    assert sandbox.world.user_tokens == {}


async def test_user_is_looked_up_on_the_site_of_the_context(sandbox: RunningSandbox) -> None:
    """A globex user minted with acme's ARI is not found: the ARI picks the site."""
    _, body = await post(sandbox, mint_request([workspace_ari(CLOUD_A)], GLOBEX_ACTIVE[0]))
    assert payload(body)["errors"] == [{"message": f"User {GLOBEX_ACTIVE[0]} not found"}]
    _, body = await post(sandbox, mint_request([workspace_ari(CLOUD_B)], GLOBEX_ACTIVE[0]))
    assert payload(body)["success"] is True


async def test_seed_thread_aris_fail_and_workspace_ari_succeeds(sandbox: RunningSandbox) -> None:
    """Site ARI + installation ARI get the observed failure naming both; the workspace ARI works."""
    sent = [site_ari(CLOUD_A), INSTALLATION_A]
    status, body = await post(sandbox, mint_request(sent, ACME_ACTIVE[0]))
    assert status == 200
    expected = (
        "Could not load permissions for app user in the provided contextIds of "
        f"[ari:cloud:jira::site/{CLOUD_A}, {INSTALLATION_A}]"
    )
    assert payload(body) == {"success": False, "errors": [{"message": expected}], "authToken": None}
    assert sandbox.report()["mints"]["refused"] == {"context": 1}
    _, body = await post(sandbox, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0]))
    assert payload(body)["success"] is True


def _shape(value: Any) -> Any:
    """A JSON value's structure: keys and value types, with the spec's ``_note`` keys dropped."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


async def test_context_failure_has_the_observed_shape(
    sandbox: RunningSandbox, specs_dir: Path
) -> None:
    """The seed thread's request gets the body the real gateway sent, key for key and in order."""
    examples = json.loads((specs_dir / "offlineUserAuthToken-examples.json").read_text())
    observed = examples["failure_response_observed"]
    _, body = await post(sandbox, mint_request([site_ari(CLOUD_A), INSTALLATION_A], ACME_ACTIVE[0]))
    assert json.dumps(_shape(body)) == json.dumps(_shape(observed))
    template = observed["data"]["offlineUserAuthToken"]["errors"][0]["message"]
    ours = payload(body)["errors"][0]["message"]
    assert template.replace("{cloud ID}", CLOUD_A).replace(
        "ari:cloud:ecosystem::installation/{installation ID}", INSTALLATION_A
    ) == ours
    assert CONTEXT_MESSAGE.split("[")[0] == template.split("[")[0]


async def test_only_one_accepted_ari_is_accepted(sandbox: RunningSandbox) -> None:
    """The accepted ARI sent alongside another one is refused: contextIds must be exactly it."""
    sent = [workspace_ari(CLOUD_A), INSTALLATION_A]
    _, body = await post(sandbox, mint_request(sent, ACME_ACTIVE[0]))
    assert payload(body)["errors"] == [{"message": CONTEXT_MESSAGE.format(aris=", ".join(sent))}]


async def test_environment_without_impersonation_gets_context_failure(
    sandbox: RunningSandbox,
) -> None:
    """Scopes that forbid impersonation get the contextIds failure, even with the right ARI."""
    sent = [workspace_ari(CLOUD_A)]
    status, body = await post(sandbox, mint_request(sent, ACME_ACTIVE[0]), environment="noimp")
    assert status == 200
    assert payload(body)["errors"] == [{"message": CONTEXT_MESSAGE.format(aris=sent[0])}]
    assert sandbox.report()["mints"]["refused"] == {"impersonation": 1}


async def test_configured_context_ari_replaces_the_default(start_sandbox: StartSandbox) -> None:
    """A site configured to accept the site ARI mints with it and refuses the workspace ARI."""
    config = make_sandbox_config()
    acme = dataclasses.replace(
        config.sites["acme"], accepted_context_aris=("ari:cloud:jira::site/{cloud_id}",)
    )
    config = dataclasses.replace(config, sites={**config.sites, "acme": acme})
    async with start_sandbox(config) as sb:
        _, body = await post(sb, mint_request([site_ari(CLOUD_A)], ACME_ACTIVE[0]))
        assert payload(body)["success"] is True
        _, body = await post(sb, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0]))
        assert payload(body)["success"] is False


async def test_site_gateway_path_reaches_the_same_resolver(sandbox: RunningSandbox) -> None:
    """/gateway/api/graphql mints exactly like /graphql."""
    request = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0])
    status, body = await post(sandbox, request, path="/gateway/api/graphql")
    assert status == 200
    assert payload(body)["success"] is True


async def test_only_selected_fields_are_returned(sandbox: RunningSandbox) -> None:
    """A document selecting only success and ttl gets exactly those fields back."""
    query = (
        "mutation($input: OfflineUserAuthTokenInput!) "
        "{ offlineUserAuthToken(input: $input) { success authToken { ttl } } }"
    )
    _, body = await post(sandbox, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0], query))
    assert body["data"] == {"offlineUserAuthToken": {"success": True, "authToken": {"ttl": 3600}}}


async def test_every_answer_carries_fresh_gateway_ids(sandbox: RunningSandbox) -> None:
    """Success, refusal and a rejected document each carry a new request_id and trace_id."""
    bodies = [
        (await post(sandbox, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0])))[1],
        (await post(sandbox, mint_request([workspace_ari(CLOUD_A)], UNKNOWN_ACCOUNT)))[1],
        (await post(sandbox, {"query": "{ nope }"}))[1],
    ]
    gateways = [b["extensions"]["gateway"] for b in bodies]
    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    for gateway in gateways:
        assert uuid4.fullmatch(gateway["request_id"])
        assert re.fullmatch(r"[0-9a-f]{32}", gateway["trace_id"])
        assert gateway["crossRegion"] is False
        assert gateway["edgeCrossRegion"] is False
    assert len({g["request_id"] for g in gateways}) == 3
    assert len({g["trace_id"] for g in gateways}) == 3
