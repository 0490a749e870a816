"""See it running: Prometheus metrics and a status page, fed by the run's events.

    events ──> Monitor (subscriber) ──> Metrics (counters, histograms)  ──> GET /metrics
                      │                 StateCollector (budget gauges)  ──┘
                      └──> RunView per run, Chart, SiteView ──> snapshot ──> GET /status.json
    PostgreSQL journal ──> LanesReader (workers, lanes; read per request) ─┘  GET /status (page)

``serve`` serves these on its own port; ``run`` and ``worker --metrics-port N`` on 127.0.0.1:N.
Budget state is read through ``runner.monitor.budgetstate`` only.
"""

from __future__ import annotations

from runner.monitor.http import add_monitor_routes, serve_monitor
from runner.monitor.subscriber import InstallationView, Monitor

__all__ = ["InstallationView", "Monitor", "add_monitor_routes", "serve_monitor"]
