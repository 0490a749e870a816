"""A small client for the sandbox's Jira, for tests and benches: one user, one site, raw answers.

Deliberately not the runner's own client: tests of the sandbox must see exactly what went over
the wire (status, every header, the body), with nothing classified or retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from runner.sandbox.jira.adf import text as adf
from runner.sandbox.world import World

__all__ = ["Answer", "JiraClient", "adf", "user_token"]

_UNSET: Any = object()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # parsed JSON, the text if not JSON, None if empty


@dataclass
class JiraClient:
    """Calls ``{base}/rest/api/3{path}`` with ``Authorization: Bearer <token>``."""

    session: aiohttp.ClientSession
    base: str  # e.g. http://127.0.0.1:PORT/ex/jira/<cloud ID>
    token: str = field(repr=False)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = _UNSET,
        data: bytes | str | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        kwargs: dict[str, Any] = {"params": params, "headers": sent}
        if json is not _UNSET:
            kwargs["json"] = json
        elif data is not None:
            kwargs["data"] = data
        async with self.session.request(method, f"{self.base}/rest/api/3{path}", **kwargs) as r:
            text = await r.text()
            body: Any = None
            if text:
                try:
                    body = await r.json(content_type=None)
                except ValueError:
                    body = text
            return Answer(r.status, r.headers, body)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("PUT", path, **kwargs)


def user_token(world: World, cloud_id: str, account_id: str, ttl_s: int = 3600) -> str:
    """A token the sandbox accepts for ``account_id`` on ``cloud_id``, without the gateway."""
    return world.issue_user_token(cloud_id, account_id, "dev", ttl_s)
