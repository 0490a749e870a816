"""System tokens: the sandbox's JWTs, and the gateway's 401 for every bad one."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import aiohttp
import jwt
import pytest

from runner.errors import ConfigError
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import SandboxEnvironment
from runner.sandbox.systemtokens import ISSUER, issue_system_token, verify_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    CLOUD_A,
    FakeClock,
    StartSandbox,
    make_sandbox_config,
    mint_request,
    workspace_ari,
)

NOW = 1_800_000_000.0


def test_system_token_names_its_client_and_expires() -> None:
    """A system token is a JWT with the sandbox issuer, the client ID, iat and exp = iat + ttl."""
    config = make_sandbox_config()
    token = issue_system_token(config, "noimp", ttl_s=600, now=NOW)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"iss": ISSUER, "client_id": "noimp", "iat": int(NOW), "exp": int(NOW) + 600}


def test_system_token_lifetime_defaults_to_the_environment() -> None:
    """Without ttl_s, the token lives the environment's system_token_ttl_s."""
    config = make_sandbox_config()
    claims = jwt.decode(
        issue_system_token(config, "dev", now=NOW), options={"verify_signature": False}
    )
    assert claims["exp"] - claims["iat"] == config.environments["dev"].system_token_ttl_s


def test_verify_accepts_until_exp_then_refuses() -> None:
    """A token verifies to its environment before exp and to None from exp on."""
    config = make_sandbox_config()
    token = issue_system_token(config, "dev", ttl_s=60, now=NOW)
    env = verify_system_token(config, token, now=NOW + 59)
    assert env is not None and env.name == "dev"
    assert verify_system_token(config, token, now=NOW + 60) is None


def test_verify_refuses_forged_and_foreign_tokens() -> None:
    """Another secret, another issuer, an unknown client or garbage all verify to None."""
    config = make_sandbox_config()
    other_secret = dataclasses.replace(config, signing_secret="a different sandbox secret")
    forged = issue_system_token(other_secret, "dev", now=NOW)
    assert verify_system_token(config, forged, now=NOW) is None
    other_client = dataclasses.replace(
        config, environments={"x": SandboxEnvironment("x", client_id="someone-else")}
    )
    foreign = issue_system_token(other_client, "x", now=NOW)
    assert verify_system_token(other_client, foreign, now=NOW) is not None
    assert verify_system_token(config, foreign, now=NOW) is None
    assert verify_system_token(config, "not-a-jwt", now=NOW) is None


def test_unknown_environment_is_a_config_error() -> None:
    """Asking for a token of an environment that isn't configured names its key path."""
    with pytest.raises(ConfigError) as caught:
        issue_system_token(make_sandbox_config(), "prod", now=NOW)
    assert caught.value.key == "sandbox.environments.prod"


async def test_secrets_stay_out_of_reprs(sandbox: RunningSandbox) -> None:
    """Neither the signing secret nor a minted user token shows in the sandbox's reprs."""
    status, _, body = await _post(
        sandbox, {"Authorization": f"Bearer {issue_system_token(sandbox.config, 'dev')}"}
    )
    assert status == 200
    user_token = body["data"]["offlineUserAuthToken"]["authToken"]["token"]
    assert sandbox.config.signing_secret not in repr(sandbox.config)
    assert user_token not in repr(sandbox)
    assert user_token not in repr(sandbox.world)


async def _post(sb: RunningSandbox, headers: dict[str, str]) -> tuple[int, Any, Any]:
    body = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0])
    async with (
        aiohttp.ClientSession() as session,
        session.post(sb.gateway_url, json=body, headers=headers) as resp,
    ):
        return resp.status, resp.headers, await resp.json()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic ZGV2OmRldg==", "Bearer not-a-jwt"],
    ids=["absent", "empty", "no-token", "blank-token", "basic", "garbage"],
)
async def test_missing_or_malformed_bearer_gets_401(
    sandbox: RunningSandbox, authorization: str | None
) -> None:
    """No usable bearer token gets 401 with a JSON error and the gateway's IDs; nothing minted."""
    headers = {} if authorization is None else {"Authorization": authorization}
    status, resp_headers, body = await _post(sandbox, headers)
    assert status == 401
    assert resp_headers["WWW-Authenticate"] == "Bearer"
    assert body["errors"][0]["extensions"]["statusCode"] == 401
    assert re.fullmatch(r"[0-9a-f]{32}", body["extensions"]["gateway"]["trace_id"])
    assert "data" not in body
    assert sandbox.world.user_tokens == {}


async def test_token_of_unknown_client_gets_401(sandbox: RunningSandbox) -> None:
    """A well-signed token naming a client the sandbox doesn't have gets 401."""
    config = dataclasses.replace(
        sandbox.config, environments={"x": SandboxEnvironment("x", client_id="someone-else")}
    )
    token = issue_system_token(config, "x")
    status, _, _ = await _post(sandbox, {"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_expired_system_token_gets_401(start_sandbox: StartSandbox) -> None:
    """A system token works until its exp on the sandbox's clock, then gets 401."""
    clock = FakeClock(NOW)
    config = make_sandbox_config()
    token = issue_system_token(config, "dev", ttl_s=300, now=NOW)
    headers = {"Authorization": f"Bearer {token}"}
    async with start_sandbox(config, clock=clock) as sb:
        clock.advance(299)
        assert (await _post(sb, headers))[0] == 200
        clock.advance(1)
        status, _, body = await _post(sb, headers)
        assert status == 401
        assert body["errors"][0]["message"] == "Unauthorized"


async def test_bearer_scheme_is_case_insensitive(sandbox: RunningSandbox) -> None:
    """``bearer <token>`` is accepted like ``Bearer <token>``, as HTTP auth schemes are."""
    token = issue_system_token(sandbox.config, "dev")
    status, _, body = await _post(sandbox, {"Authorization": f"bearer {token}"})
    assert status == 200
    assert body["data"]["offlineUserAuthToken"]["success"] is True
