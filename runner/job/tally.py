"""Counting distinct keys over a stream in a few bytes per distinct key.

A million-row job has up to a million distinct users; a ``set`` of their account IDs would cost
~100 bytes each. ``HashTally`` keeps 64-bit hashes in compact arrays instead: new hashes go to a
small buffer; a full buffer is sorted and folded into a sorted run of (hash, count); a run is
merged into the one before it while it is at least half that one's size, so runs stay few and
each hash is moved O(log n) times. About 16 bytes per distinct key, whatever the number of rows.
Two different keys share a hash with odds ~n²/2⁶⁵ (1e-7 for a million keys): fine for counts
and estimates, and callers that must be exact (duplicate row keys) re-check by value.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from collections.abc import Iterator

# Sorting the buffer briefly costs ~40 bytes per entry (Python ints in a list): keep it small.
_BUFFER = 1 << 14


def key_hash(key: str) -> int:
    """A stable 64-bit hash (the same in every process, unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class HashTally:
    """Occurrences per key, kept as hashes."""

    def __init__(self) -> None:
        self._buffer: array[int] = array("Q")
        self._runs: list[tuple[array[int], array[int]]] = []
        self.total = 0

    def add(self, key: str) -> int:
        """Count ``key`` once; returns its hash."""
        h = key_hash(key)
        self._buffer.append(h)
        self.total += 1
        if len(self._buffer) >= _BUFFER:
            self._flush()
        return h

    def _flush(self) -> None:
        if not self._buffer:
            return
        hashes: array[int] = array("Q")
        counts: array[int] = array("Q")
        for h in sorted(self._buffer):
            if hashes and hashes[-1] == h:
                counts[-1] += 1
            else:
                hashes.append(h)
                counts.append(1)
        self._buffer = array("Q")
        self._runs.append((hashes, counts))
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            newer = self._runs.pop()
            older = self._runs.pop()
            merged_h: array[int] = array("Q")
            merged_c: array[int] = array("Q")
            for h, c in self._merge([older, newer]):
                merged_h.append(h)
                merged_c.append(c)
            self._runs.append((merged_h, merged_c))

    @staticmethod
    def _merge(runs: list[tuple[array[int], array[int]]]) -> Iterator[tuple[int, int]]:
        streams = [zip(h, c, strict=True) for h, c in runs]
        current: int | None = None
        count = 0
        for h, c in heapq.merge(*streams):
            if h == current:
                count += c
                continue
            if current is not None:
                yield current, count
            current, count = h, c
        if current is not None:
            yield current, count

    def items(self) -> Iterator[tuple[int, int]]:
        """(hash, count) per distinct key, in hash order."""
        self._flush()
        return self._merge(self._runs)

    def distinct(self) -> int:
        return sum(1 for _ in self.items())

    def repeated(self) -> list[int]:
        """The hashes seen more than once."""
        return [h for h, c in self.items() if c > 1]

    def most(self) -> tuple[int, int] | None:
        """The (hash, count) seen most often, or None when empty."""
        best: tuple[int, int] | None = None
        for h, c in self.items():
            if best is None or c > best[1]:
                best = (h, c)
        return best
