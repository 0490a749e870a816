"""A PostgreSQL client driven a line at a time, run inside a namespace by the host tests.

    python -m tests.cluster.probe URL

Reads commands on stdin and answers each with one line on stdout:

- ``connect S``: open a new connection within S seconds: ``connected``, ``connect-timeout``, or
  ``connect-failed <why>``; it becomes the connection the next commands use;
- ``query S``: send ``SELECT 1``: ``answered 1`` within S seconds, else ``pending`` (the query
  stays in flight);
- ``wait``: wait for the query in flight: ``answered 1`` (or ``failed <why>``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import psycopg


async def main(url: str) -> None:
    loop = asyncio.get_running_loop()
    conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
    pending: asyncio.Task[Any] | None = None

    async def select(c: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
        cur = await c.execute("SELECT 1")
        row = await cur.fetchone()
        return row[0] if row else None

    def say(line: str) -> None:
        print(line, flush=True)

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, *args = line.split()
        if command == "connect":
            try:
                conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=max(2, int(float(args[0])))),
                    float(args[0]))
                say("connected")
            except TimeoutError:
                say("connect-timeout")
            except psycopg.OperationalError as exc:
                say(f"connect-failed {str(exc).splitlines()[0]}")
        elif command == "query" and conn is not None:
            pending = asyncio.ensure_future(select(conn))
            done, _ = await asyncio.wait({pending}, timeout=float(args[0]))
            if done:
                say(f"answered {pending.result()}")
                pending = None
            else:
                say("pending")
        elif command == "wait" and pending is not None:
            try:
                say(f"answered {await pending}")
            except psycopg.Error as exc:
                say(f"failed {str(exc).splitlines()[0]}")
            pending = None
        else:
            say(f"unknown {line.strip()}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
