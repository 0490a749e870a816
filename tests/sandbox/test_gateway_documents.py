"""The gateway checks every document against the mutation schema, own or real, before running it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.errors import ConfigError
from runner.sandbox.app import RunningSandbox, build_app
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import (
    ACME_ACTIVE,
    CLOUD_A,
    StartSandbox,
    make_sandbox_config,
    mint_request,
    workspace_ari,
)


async def _post_raw(sb: RunningSandbox, data: bytes | str) -> tuple[int, dict[str, Any]]:
    token = issue_system_token(sb.config, "dev")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sb.gateway_url, data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _post(sb: RunningSandbox, body: Any) -> tuple[int, dict[str, Any]]:
    import json

    return await _post_raw(sb, json.dumps(body))


UNKNOWN_FIELD = (
    "mutation($input: OfflineUserAuthTokenInput!) "
    "{ offlineUserAuthToken(input: $input) { success authToken { token ttl expiresAt } } }"
)


async def test_unknown_field_is_a_validation_error(sandbox: RunningSandbox) -> None:
    """Selecting a field the schema lacks rejects the whole document: 400, located, classified."""
    status, body = await _post(sandbox, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0],
                                                     UNKNOWN_FIELD))
    assert status == 400
    [error] = body["errors"]
    assert "expiresAt" in error["message"]
    assert error["locations"] == [{"line": 1, "column": UNKNOWN_FIELD.index("expiresAt") + 1}]
    assert error["extensions"]["classification"] == "ValidationError"
    assert "data" not in body
    assert body["extensions"]["gateway"]["request_id"]
    assert sandbox.world.user_tokens == {}
    assert sandbox.report()["mints"]["accepted"] == {}


async def test_wrong_argument_type_is_a_validation_error(sandbox: RunningSandbox) -> None:
    """An inline input missing the required userId fails validation before anything runs."""
    query = 'mutation { offlineUserAuthToken(input: {contextIds: ["x"]}) { success } }'
    status, body = await _post(sandbox, {"query": query})
    assert status == 400
    assert "userId" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["classification"] == "ValidationError"


async def test_syntax_error_is_invalid_syntax(sandbox: RunningSandbox) -> None:
    """A document that doesn't parse gets 400 with the location and classification InvalidSyntax."""
    status, body = await _post(sandbox, {"query": "mutation { offlineUserAuthToken("})
    assert status == 400
    [error] = body["errors"]
    assert error["locations"][0]["line"] == 1
    assert error["extensions"]["classification"] == "InvalidSyntax"


async def test_variables_that_dont_coerce_are_rejected(sandbox: RunningSandbox) -> None:
    """A missing userId in the variables is a request error: 400, nothing minted."""
    body = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0])
    del body["variables"]["input"]["userId"]
    status, answer = await _post(sandbox, body)
    assert status == 400
    assert "userId" in answer["errors"][0]["message"]
    assert sandbox.world.user_tokens == {}


@pytest.mark.parametrize(
    "data",
    ["not json", "[1, 2]", '{"variables": {}}', '{"query": "{ _placeholder }", "variables": 3}'],
    ids=["not-json", "array", "no-query", "bad-variables"],
)
async def test_malformed_request_body_gets_400(sandbox: RunningSandbox, data: str) -> None:
    """A body that isn't a GraphQL request object gets 400 with a message and the gateway's IDs."""
    status, body = await _post_raw(sandbox, data)
    assert status == 400
    assert body["errors"][0]["message"]
    assert body["extensions"]["gateway"]["trace_id"]


async def test_real_schema_from_spec_dir_mints_and_rejects(
    start_sandbox: StartSandbox, specs_dir: Path
) -> None:
    """With spec_dir set, the real schema validates: the documented query mints, a bad one fails."""
    config = dataclasses.replace(make_sandbox_config(), spec_dir=specs_dir)
    async with start_sandbox(config) as sb:
        status, body = await _post(sb, mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0]))
        assert status == 200
        assert body["data"]["offlineUserAuthToken"]["success"] is True
        bad = mint_request([workspace_ari(CLOUD_A)], ACME_ACTIVE[0], UNKNOWN_FIELD)
        assert (await _post(sb, bad))[0] == 400


def test_spec_dir_without_the_schema_is_a_config_error(tmp_path: Path) -> None:
    """A spec_dir lacking the schema file stops the sandbox with sandbox.spec_dir named."""
    config = dataclasses.replace(make_sandbox_config(), spec_dir=tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_app(config)
    assert caught.value.key == "sandbox.spec_dir"


async def test_other_methods_get_405_with_gateway_ids(sandbox: RunningSandbox) -> None:
    """A GET to the gateway gets 405, Allow: POST, and still the gateway's request and trace IDs."""
    async with aiohttp.ClientSession() as session, session.get(sandbox.gateway_url) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        body = await resp.json()
    assert body["extensions"]["gateway"]["request_id"]
