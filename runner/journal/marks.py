"""What both journals share: ``async with``, and every item mark as one call of ``_submit``.

A journal supplies ``open``, ``close`` and ``_submit(run_id, item, state, reason, detail,
result=...)``, which queues one item's move and returns a future settled once the move is
durable (at once, in memory). ``result`` reaches it already encoded: compact JSON, secrets
hidden, size checked (``clean_result``), so both journals hold the same value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from runner.errors import JournalError
from runner.journal.base import ItemRef, ItemState
from runner.journal.rules import clean_result


class ItemMarks:
    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _submit(
        self,
        run_id: str,
        item: ItemRef,
        state: ItemState,
        reason: str | None = None,
        detail: str | None = None,
        *,
        result: str | None = None,
    ) -> asyncio.Future[None]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def mark_started(self, run_id: str, item: ItemRef) -> None:
        await self._submit(run_id, item, ItemState.STARTED)

    async def mark_done(
        self, run_id: str, item: ItemRef, result: Mapping[str, Any] | None = None
    ) -> None:
        await self._submit(run_id, item, ItemState.DONE, result=clean_result(result))

    def submit_done(
        self, run_id: str, item: ItemRef, result: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        try:
            return self._submit(run_id, item, ItemState.DONE, result=clean_result(result))
        except JournalError as exc:  # refused before it was queued: the future says so
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def mark_failed(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None:
        await self._submit(run_id, item, ItemState.FAILED, reason, detail)

    async def mark_skipped(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None:
        await self._submit(run_id, item, ItemState.SKIPPED, reason, detail)

    async def mark_blocked(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None:
        await self._submit(run_id, item, ItemState.BLOCKED, reason, detail)

    async def mark_uncertain(
        self, run_id: str, item: ItemRef, reason: str, *, detail: str = ""
    ) -> None:
        await self._submit(run_id, item, ItemState.UNCERTAIN, reason, detail)
