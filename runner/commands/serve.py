"""``forge-runner serve``: the app's Forge remote endpoint, until interrupted.

    forge-runner serve --config FILE [--host H] [--port N] [--token-port N]

Checks the config and every job template first (a bad one exits 2, nothing listened on), then
serves the ``[serve]`` routes, ``GET /metrics`` and the status page (``/status``: loopback only
unless ``[serve.status]`` names an operator token) on the same port, and the loopback token
route, and ``/healthz``/``/readyz``. On a PostgreSQL journal it is one replica of many
(``runner.remote.servedb``). The first SIGINT/SIGTERM stops
listening and drains the runs in flight (they end ``interrupted`` and resume on the next
trigger of the same interval); a second one stops them at once. Exit 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from rich.console import Console

from runner.commands.run import DEFAULT_CONFIG
from runner.config.configfile import Config, load_config
from runner.engine.shutdown import Shutdown
from runner.logs.setup import LogFormat, configure_logging
from runner.remote.server import serve_remote
from runner.remote.settings import require_serve_config


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve the app's Forge remote endpoint (keeps system tokens fresh, runs "
        "nightly jobs)",
        description="Serve the remote endpoint Forge invokes: verify each invocation, keep "
        "each installation's newest system token, and run the job templates scheduled "
        "triggers start. Routes come from the [serve] section of the config. The same port "
        "answers GET /metrics (Prometheus) and the status page /status (loopback clients "
        "only, unless [serve.status] names an operator token), GET /healthz (alive) and GET "
        "/readyz (200 when the database answers and the JWKS is loaded, else 503). With "
        "[runner] journal a postgresql:// URL, any number of serve processes run as replicas "
        "of one another: triggers are accepted in the database (one run per installation and "
        "interval), system tokens are kept there sealed with the [serve.seal] key (required "
        "then; missing, malformed or another replica's: exit 2).",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"the config file (default: {DEFAULT_CONFIG})")
    parser.add_argument("--host", help="address to listen on (default: serve.host)")
    parser.add_argument("--port", type=int, metavar="N",
                        help="port (default: serve.port; 0 picks a free one)")
    parser.add_argument("--token-port", type=int, metavar="N",
                        help="loopback token port (default: serve.token_endpoint.port)")
    parser.add_argument("--log-format", choices=("console", "plain", "json"), default=None)
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_serve_config(config)  # a bad [serve] stops here, before anything listens
    # Text from config and Atlassian prints as it is: no markup, emoji codes or highlighting.
    console = Console(stderr=True, markup=False, emoji=False, highlight=False)
    log_format: LogFormat = args.log_format or ("console" if console.is_terminal else "plain")
    configure_logging(format=log_format)
    return asyncio.run(_serve(args, config, console))


async def _serve(args: argparse.Namespace, config: Config, console: Console) -> int:
    # Signals are routed from before listening: one that comes while starting still drains.
    shutdown = Shutdown()
    with shutdown.installed():
        async with serve_remote(config, host=args.host, port=args.port,
                                token_port=args.token_port) as remote:
            console.print(f"forge-runner serve: listening on {remote.url} "
                          f"(system tokens for this host at {remote.token_url})")
            drain = asyncio.Event()
            shutdown.on_drain(drain.set)
            await drain.wait()
            name = signal.Signals(shutdown.signal).name if shutdown.signal else "stop"
            console.print(f"{name}: draining the runs in flight (again to stop them at once)")
            shutdown.on_force(remote.stop)  # the second stop: runs in flight are cancelled
            # Leaving the block stops listening and drains the runs.
    return 0
