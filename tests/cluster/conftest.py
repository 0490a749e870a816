"""Fixtures of the cluster tests: a "host" (a network namespace of its own), and proxies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.hosts import Host, make_host, require_root


@pytest.fixture
def host() -> Iterator[Host]:
    """A network namespace joined to this one by a veth pair; removed after the test, with
    whatever still runs in it. Skips without root, except under CI=true (fails)."""
    require_root()
    with make_host() as made:
        yield made
