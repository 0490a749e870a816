"""Hosts as network namespaces, and the proxy that partitions them: a process in a namespace
reaches PostgreSQL only through the proxy, a blackhole holds it, heal lets it through again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.cluster.hosts import Host, Proxy, ip, make_host, require_root

ROOT = Path(__file__).resolve().parents[2]
ANSWER_S = 30.0  # a probe that says nothing for this long is stuck: fail, don't hang


def via(url: str, address: str) -> str:
    """``url`` with its host and port replaced by ``address``."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit((parts.scheme, f"{user}@{address}", parts.path, parts.query, ""))


class Probe:
    """``tests.cluster.probe`` running inside ``host``, asked one line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        answer = await asyncio.wait_for(self.proc.stdout.readline(), ANSWER_S)
        return answer.decode().strip()


@pytest.fixture
async def probe_in(host: Host) -> AsyncIterator[object]:
    """``await probe_in(url)``: a probe in ``host`` for the database at ``url``."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(url: str) -> Probe:
        proc = await asyncio.create_subprocess_exec(
            *host.command(sys.executable, "-m", "tests.cluster.probe", url), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        procs.append(proc)
        return Probe(proc)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_namespace_reaches_postgresql_only_through_the_proxy(
        host: Host, probe_in, pg_url: str) -> None:
    """Inside the namespace 127.0.0.1 is its own loopback (no PostgreSQL there); through the
    proxy on the root side of the veth, a query is answered."""
    target = urlsplit(pg_url)
    direct = await probe_in(pg_url)
    assert (await direct.ask("connect 5")).startswith("connect-failed")
    async with Proxy(host.root_addr, target.hostname or "", target.port or 5432) as proxy:
        probe = await probe_in(via(pg_url, proxy.address))
        assert await probe.ask("connect 5") == "connected"
        assert await probe.ask("query 5") == "answered 1"


async def test_a_blackhole_holds_connections_and_heal_lets_them_through(
        host: Host, probe_in, pg_url: str) -> None:
    """Blackholed: a query on an open connection gets no answer, a new connection is accepted
    but never answered; healed: the held query is answered (held, not lost, as TCP would
    deliver it), and new connections work."""
    target = urlsplit(pg_url)
    async with Proxy(host.root_addr, target.hostname or "", target.port or 5432) as proxy:
        probe = await probe_in(via(pg_url, proxy.address))
        assert await probe.ask("connect 5") == "connected"
        assert await probe.ask("query 5") == "answered 1"
        proxy.blackhole()
        assert await probe.ask("query 1.5") == "pending"
        late = await probe_in(via(pg_url, proxy.address))
        assert await late.ask("connect 1.5") == "connect-timeout"
        assert proxy.accepted == 2  # the held one was accepted, not refused
        proxy.heal()
        assert await probe.ask("wait") == "answered 1"
        assert await late.ask("connect 5") == "connected"
        assert await late.ask("query 5") == "answered 1"


async def test_an_unplugged_host_reaches_nothing_until_plugged_back(
        host: Host, probe_in, pg_url: str) -> None:
    """The veth's link down: a new connection times out; up again: it connects."""
    target = urlsplit(pg_url)
    async with Proxy(host.root_addr, target.hostname or "", target.port or 5432) as proxy:
        probe = await probe_in(via(pg_url, proxy.address))
        host.unplug()
        assert await probe.ask("connect 1.5") == "connect-timeout"
        host.plug()
        assert await probe.ask("connect 10") == "connected"


def test_a_host_is_removed_with_its_processes_even_when_the_test_fails() -> None:
    """An error inside ``make_host``: the namespace, both veth ends and the process left
    running in it are gone afterwards; two hosts at once get different names and subnets."""
    require_root()
    with pytest.raises(RuntimeError, match="the test failed"), make_host() as made:
        with make_host() as other:
            assert (other.name, other.root_addr) != (made.name, made.root_addr)
        # Started and seen inside the namespace (its line comes from there) before the error:
        # `ip netns exec` enters it a moment after Popen returns.
        left = subprocess.Popen(made.command("sh", "-c", "echo inside; exec sleep 600"),
                                stdout=subprocess.PIPE)
        assert left.stdout is not None and left.stdout.readline() == b"inside\n"
        raise RuntimeError("the test failed")
    assert left.wait(timeout=ANSWER_S) < 0  # killed, not exited
    left.communicate()  # its pipe read to the end and closed
    assert made.name not in ip("netns", "list")
    assert made.root_veth not in ip("-o", "link")
    assert other.name not in ip("netns", "list")
