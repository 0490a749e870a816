"""The package's public API: every name in ``__all__`` is there."""

from __future__ import annotations

import runner


def test_every_public_name_resolves() -> None:
    """Each name ``runner.__all__`` lists can be got from the package (lazily imported ones too)."""
    for name in runner.__all__:
        assert getattr(runner, name) is not None, name
