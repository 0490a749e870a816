"""The ``[cluster]`` section: how workers share runs on a PostgreSQL journal.

    [cluster]
    lease_s = 60      # a lane's lease; renewed every lease_s / 4
    poll_s = 1.0      # how often an idle worker looks for lanes to claim
    weight = 1.0      # this process's runs' share when workers pick among runs

A lease must outlive a request: a worker starts an item's request only while its lane's lease
has more than ``[runner] request_timeout_s`` left, so a request it sent has been answered or
given up before any other worker may take the lane over. Hence ``lease_s`` must be at least
twice ``request_timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.config.configfile import Config
from runner.config.tables import Table
from runner.errors import ConfigError


@dataclass(frozen=True)
class ClusterSettings:
    lease_s: float = 60.0
    poll_s: float = 1.0
    weight: float = 1.0
    # Sending stops this long before a lease ends (the request timeout).
    margin_s: float = 30.0

    @property
    def renew_s(self) -> float:
        return self.lease_s / 4


def cluster_settings(config: Config) -> ClusterSettings:
    """``[cluster]`` read and checked (the defaults without one)."""
    margin = config.runner.request_timeout_s

    def error(key: str, expected: str, found: str) -> ConfigError:
        return ConfigError(key, expected, found, file=config.path)

    if config.cluster_table is None:
        d = ClusterSettings(margin_s=margin)
        if d.lease_s < 2 * margin:
            raise error("cluster.lease_s", f"at least twice [runner] request_timeout_s "
                        f"({margin:g}s): set [cluster] lease_s", f"the default {d.lease_s:g}")
        return d
    t = Table(dict(config.cluster_table), "cluster", error)
    d = ClusterSettings()
    lease = t.number("lease_s", d.lease_s, positive=True)
    if lease < 2 * margin:
        raise error("cluster.lease_s", f"at least twice [runner] request_timeout_s "
                    f"({margin:g}s)", f"{lease:g}")
    out = ClusterSettings(lease_s=lease, poll_s=t.number("poll_s", d.poll_s, positive=True),
                          weight=t.number("weight", d.weight, positive=True), margin_s=margin)
    t.done()
    return out
