"""Seeded fault injection: which requests fail, how, and how late they answer.

A draw depends only on the seed and the request's identity (method, path, and how many times
that method and path were called before), never on arrival order across paths, so concurrent
clients get the same faults on every run with the same seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from runner.sandbox.config import Faults

KINDS = ("500", "502", "503", "drop")


@dataclass(frozen=True)
class Draw:
    """What happens to one request."""

    kind: str | None  # one of KINDS, or None
    latency_s: float
    # The fault strikes after the request took effect (the answer is lost, not the write).
    after_effect: bool
    # Uniform in [0, 1): picks whether a 429 of this request is sent edge-style.
    edge: float


class FaultPlan:
    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.seed = seed
        self._seen: Counter[tuple[str, str]] = Counter()

    def _uniform(self, identity: str, label: str) -> float:
        digest = hashlib.blake2b(f"{self.seed}|{identity}|{label}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2.0**64

    def draw(self, cloud_id: str, method: str, path: str) -> Draw:
        """The fate of the next ``method path`` request (``path`` includes the cloud ID)."""
        n = self._seen[(method, path)]
        self._seen[(method, path)] += 1
        identity = f"{method}|{path}|{n}"
        edge = self._uniform(identity, "edge")
        f = self.faults
        if f.only_cloud_ids and cloud_id not in f.only_cloud_ids:
            return Draw(None, 0.0, False, edge)
        low, high = sorted((f.latency_ms_min, f.latency_ms_max))
        latency = (low + (high - low) * self._uniform(identity, "latency")) / 1000.0
        roll = self._uniform(identity, "fault")
        kind = None
        for name, share in zip(
            KINDS, (f.http_500, f.http_502, f.http_503, f.drop_connection), strict=True
        ):
            if roll < share:
                kind = name
                break
            roll -= share
        after = kind is not None and self._uniform(identity, "after") < f.after_effect
        return Draw(kind, latency, after, edge)
