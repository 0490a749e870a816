"""Checks across a config's sections, made by ``load_config`` before anything else runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.config.configfile import EnvironmentConfig
    from runner.errors import ConfigError


def check_shared_buckets(environments: Mapping[str, EnvironmentConfig],
                         error: Callable[[str, str, str], ConfigError]) -> None:
    """Environments naming one mint bucket must state one budget: it is one OAuth client's
    limit, and two budgets for it can't both be right."""
    first: dict[str, EnvironmentConfig] = {}
    for env in environments.values():
        owner = first.setdefault(env.bucket, env)
        if (owner.mint_limit, owner.mint_window_s) != (env.mint_limit, env.mint_window_s):
            raise error(
                f"environments.{env.name}.mint_limit",
                f"the budget of shared bucket {env.bucket!r} as environments.{owner.name} "
                f"states it ({owner.mint_limit} per {owner.mint_window_s:g} s)",
                f"{env.mint_limit} per {env.mint_window_s:g} s",
            )
