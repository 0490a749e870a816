"""Other "hosts" on one machine: Linux network namespaces, and a proxy that can partition them.

A ``Host`` is a network namespace joined to the root namespace by a veth pair (a /30 of its
own): a process started in it (``host.command(...)``, ``ip netns exec``) has its own loopback
and reaches the root namespace only at ``host.root_addr``, so it sees the machine's PostgreSQL
and the sandbox only through a ``Proxy`` listening there. ``make_host()`` makes one and removes
it, and ends the processes left in it, whatever happens in between; names and addresses are
unique per call, so parallel runs and a run that died earlier do not collide.

The ``Proxy`` is a small asyncio TCP forwarder in the test's process. ``blackhole()`` is a
partition as TCP sees one: connections stay open, nothing is forwarded either way (bytes sent
meanwhile are held, as a peer's retransmissions would be), new connections are accepted and
held; ``heal()`` lets everything through again, held bytes first. That is the case fencing is
for: a write sent before the cut lands after the link comes back. (``tc netem`` and iptables
are not on the machine; ``ip link set ... down`` is ``host.unplug()``.)

Needs root (``ip netns add``): ``require_root()`` skips a test without it, except under
``CI=true``, where CI runs as root and a missing privilege fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

# Addresses for the veth pairs: a /30 per host out of this block.
BLOCK = ipaddress.IPv4Network("10.213.0.0/16")
CHUNK = 65536


def require_root() -> None:
    """Skip the calling test without root and the ``ip`` tool, unless ``CI=true`` (then fail)."""
    problem = None
    if os.geteuid() != 0:
        problem = "network namespaces need root"
    elif shutil.which("ip") is None:
        problem = "the ip tool (iproute2) is not on PATH"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}; CI runs as root with iproute2")
    pytest.skip(problem)


def ip(*args: str) -> str:
    """Run ``ip ARGS``; a failure raises with what ip said."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(word).network for line in ip("-o", "-4", "addr").splitlines()
            for word in line.split() if "/" in word and word[0].isdigit()]
    subnets = list(BLOCK.subnets(new_prefix=30))
    for _ in range(100):
        candidate = subnets[secrets.randbelow(len(subnets))]
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError(f"no free /30 left in {BLOCK}")


@dataclass(frozen=True)
class Host:
    """A network namespace ``name`` and its veth pair; ``root_addr`` is the root namespace's
    end (where proxies listen), ``addr`` the namespace's own."""

    name: str
    root_veth: str
    veth: str
    root_addr: str
    addr: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        return [int(p) for p in ip("netns", "pids", self.name).split()]

    def unplug(self) -> None:
        """Take the link down: the namespace reaches nothing, and its sockets see no reset."""
        ip("link", "set", self.root_veth, "down")

    def plug(self) -> None:
        ip("link", "set", self.root_veth, "up")


@contextmanager
def make_host() -> Iterator[Host]:
    """A new namespace joined by a veth pair; removed afterwards with what runs in it."""
    tag = secrets.token_hex(3)
    subnet = _free_subnet()
    root_addr, addr = (str(a) for a in list(subnet.hosts())[:2])
    host = Host(f"frh-{tag}", f"frh{tag}r", f"frh{tag}n", root_addr, addr)
    try:
        ip("netns", "add", host.name)
        ip("link", "add", host.root_veth, "type", "veth", "peer", "name", host.veth)
        ip("link", "set", host.veth, "netns", host.name)
        ip("addr", "add", f"{root_addr}/30", "dev", host.root_veth)
        ip("link", "set", host.root_veth, "up")
        inside = ("netns", "exec", host.name, "ip")
        ip(*inside, "addr", "add", f"{addr}/30", "dev", host.veth)
        ip(*inside, "link", "set", host.veth, "up")
        ip(*inside, "link", "set", "lo", "up")
        yield host
    finally:
        _remove(host)


def _remove(host: Host) -> None:
    # Only processes this host's tests started live in its namespace: end them by their IDs.
    with contextlib.suppress(RuntimeError):
        for pid in host.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Deleting the namespace destroys its veth end, and with it the pair; the root end is
    # deleted too in case the pair was never moved.
    with contextlib.suppress(RuntimeError):
        ip("netns", "del", host.name)
    with contextlib.suppress(RuntimeError):
        ip("link", "del", host.root_veth)


@dataclass
class Proxy:
    """Forwards TCP from ``listen_host`` (port chosen at start) to ``target``."""

    listen_host: str
    target_host: str
    target_port: int
    port: int = 0
    _server: asyncio.Server | None = None
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    accepted: int = 0
    _closing: bool = False

    async def start(self) -> Proxy:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def blackhole(self) -> None:
        """Forward nothing, either way, on any connection; hold new ones."""
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    async def close(self) -> None:
        # Held connections wake up, see the proxy closing, and end (cancelling asyncio's own
        # connection tasks would have it log their cancellation as an error).
        self._closing = True
        self._open.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        # A connection made during a blackhole is held: the server hears of it after heal().
        await self._open.wait()
        if self._closing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                 self.target_port)
        except OSError:
            writer.close()
            return
        if self._closing:
            writer.close()
            up_writer.close()
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer))
        self._spawn(self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                await self._open.wait()  # held, not dropped, while blackholed
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
