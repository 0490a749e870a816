"""User tokens in memory, one per (environment, site, account), minted once and shared.

A token is reused until ``expires_at - refresh_margin`` (at most half its life early);
concurrent requests for one key make exactly one mint (single flight: the others wait for its
token or its error); a Jira 401 drops the token it was sent with, so the next request mints
once more. A big job meets each user
once, so memory is bounded by evicting expired entries and, past ``max_entries``, the oldest.
Tokens never leave memory.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from runner.budgets import Clock, SystemClock
from runner.minting.gateway import Minted

TokenKey = tuple[str, str, str]  # (environment, site, account ID)


@dataclass(frozen=True)
class _Entry:
    token: str = field(repr=False)
    expires_at: float
    refresh_at: float


class _Flight:
    """One mint in progress; waiters read its result once ``done`` is set."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # the minting task was cancelled: a waiter mints instead


class TokenCache:
    """Tokens by key, with early refresh and single flight."""

    def __init__(
        self,
        *,
        refresh_margin_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        self._margin = refresh_margin_s
        self._max = max(1, max_entries)
        self._clock: Clock = clock or SystemClock()
        # Insertion order is mint order, which for tokens of one lifetime is expiry order.
        self._entries: OrderedDict[TokenKey, _Entry] = OrderedDict()
        self._flights: dict[TokenKey, _Flight] = {}
        self.mints = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: TokenKey, mint: Callable[[], Awaitable[Minted]]) -> str:
        """The token for ``key``: cached if still good, else minted once by ``mint`` for every
        concurrent caller. A mint's error reaches every caller that waited for it."""
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry.refresh_at > self._clock.now():
                return entry.token
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, mint)
            await flight.done.wait()
            if flight.abandoned:
                continue  # its minter was cancelled; look again, perhaps lead
            if flight.error is not None:
                raise flight.error
            assert flight.entry is not None
            return flight.entry.token

    async def _lead(self, key: TokenKey, mint: Callable[[], Awaitable[Minted]]) -> str:
        flight = _Flight()
        self._flights[key] = flight
        try:
            minted = await mint()
            # A short-lived token (a sandbox's, a test's) is still used for half its life.
            margin = min(self._margin, minted.ttl_s / 2)
            entry = _Entry(minted.token, minted.expires_at, minted.expires_at - margin)
            flight.entry = entry
            self.mints += 1
            self._store(key, entry)
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            # Cancelled (or the process is stopping): no answer to share; a waiter mints.
            flight.abandoned = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        return entry.token

    def invalidate(self, key: TokenKey, token: str) -> bool:
        """Drop ``key``'s token if it is still ``token`` (one a Jira 401 answered). A token
        minted since by another worker stays. Returns whether one was dropped."""
        entry = self._entries.get(key)
        if entry is None or entry.token != token:
            return False
        del self._entries[key]
        return True

    def _store(self, key: TokenKey, entry: _Entry) -> None:
        self._entries.pop(key, None)
        self._entries[key] = entry
        now = self._clock.now()
        # Expired entries cluster at the old end; stop at the first live one.
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.expires_at > now and len(self._entries) <= self._max:
                break
            del self._entries[oldest_key]
