"""Who may read the status page: loopback clients; others only with the operator token.
/metrics answers anyone who reaches the port (it names no account, row or token)."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from runner.sandbox.testing import StartSandbox
from tests.monitor.world import served

TOKEN = "operator-token-for-the-test-0123456789"


def outward_address() -> str:
    """This host's address on its default route (not loopback); skips when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: nothing is sent
        except OSError:
            pytest.skip("this host has no address besides loopback")
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this host has no address besides loopback")
    return address


async def _status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status


@pytest.mark.parametrize("configured", [False, True])
async def test_the_page_from_elsewhere_needs_the_operator_token(
        tmp_path: Path, start_sandbox: StartSandbox, monkeypatch: pytest.MonkeyPatch,
        configured: bool) -> None:
    """Served on every address: from loopback the page answers; from the host's other address
    it is 403 without the token (and with a wrong one), 200 with the configured one, and 403
    whatever is sent when no token is configured. /metrics answers from both."""
    address = outward_address()
    monkeypatch.setenv("FORGE_RUNNER_TEST_OPERATOR_TOKEN", TOKEN)
    extra = '[serve.status]\nsecret_env = "FORGE_RUNNER_TEST_OPERATOR_TOKEN"\n' if configured \
        else ""
    async with served(tmp_path, start_sandbox, host="0.0.0.0", serve_extra=extra) as world:
        port = world.remote.url.rsplit(":", 1)[1]
        here, there = f"http://127.0.0.1:{port}", f"http://{address}:{port}"
        for path in ("/status", "/status.json", "/status/chart.svg"):
            assert await _status(here + path) == 200
            assert await _status(there + path) == 403
            wrong = {"Authorization": "Bearer not-the-token-at-all"}
            assert await _status(there + path, wrong) == 403
            right = {"Authorization": f"Bearer {TOKEN}"}
            assert await _status(there + path, right) == (200 if configured else 403)
        assert await _status(there + "/metrics") == 200
