"""``forge-runner sandbox``: serve the simulated cloud, or print a system token for it.

    forge-runner sandbox --config FILE [--port N]
    forge-runner sandbox system-token --config FILE --environment NAME [--ttl S]

Both read the ``[sandbox]`` table of FILE. ``system-token`` needs no server (it signs the token
itself), so a config's ``system_token.command`` can call it; it imports nothing of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.errors import ConfigError, InputError
from runner.sandbox.config import SandboxConfig, load_sandbox_config
from runner.sandbox.systemtokens import issue_system_token

if TYPE_CHECKING:
    from runner.sandbox.app import RunningSandbox


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="serve the simulated Atlassian cloud (gateway + Jira) on this machine",
        description="Serve the sandbox described by the [sandbox] table of a config file, "
        "until interrupted (Ctrl+C or SIGTERM).",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file ([sandbox])")
    parser.add_argument(
        "--port", type=int, metavar="N", help="port (default: sandbox.port; 0 picks a free one)"
    )
    parser.set_defaults(func=_serve_command)
    actions = parser.add_subparsers(dest="sandbox_action", metavar="ACTION")
    token = actions.add_parser(
        "system-token",
        help="print a system token the sandbox's gateway accepts",
        description="Print a system token for one of the sandbox's environments. "
        "Needs no running sandbox: the token is signed with sandbox.signing_secret.",
    )
    # SUPPRESS: without it, this default would overwrite a --config given before the action.
    token.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS)
    token.add_argument("--environment", required=True, metavar="NAME")
    token.add_argument(
        "--ttl", type=int, metavar="S", help="lifetime in seconds (default: its system_token_ttl_s)"
    )
    token.set_defaults(func=_system_token_command)


def read_sandbox_config(path: Path | None) -> SandboxConfig:
    """The ``[sandbox]`` table of the TOML file at ``path``; a ConfigError naming what is wrong."""
    if path is None:
        raise InputError("sandbox: --config FILE is required")
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        found = exc.strerror or str(exc)
        raise ConfigError("--config", "a readable TOML file", found, file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", "valid TOML", str(exc), file=path) from None
    table = document.get("sandbox")
    if not isinstance(table, dict):
        raise ConfigError("sandbox", "a [sandbox] table", "none", file=path)
    return load_sandbox_config(table, base_dir=path.parent, file=path)


def _system_token_command(args: argparse.Namespace) -> int:
    config = read_sandbox_config(args.config)
    if args.ttl is not None and args.ttl <= 0:
        raise InputError(f"sandbox system-token: --ttl must be positive, not {args.ttl}")
    print(issue_system_token(config, args.environment, ttl_s=args.ttl, now=time.time()))
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    config = read_sandbox_config(args.config)
    port = config.port if args.port is None else args.port
    return asyncio.run(serve_until_signalled(config, port, out=sys.stdout))


async def serve_until_signalled(config: SandboxConfig, port: int, *, out: TextIO) -> int:
    """Serve until SIGINT or SIGTERM, then drain and return 0. A second signal acts at once."""
    from runner.sandbox.app import serve  # the server's imports are not needed to sign tokens

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        # Back to the default handlers: a second Ctrl+C interrupts the drain itself.
        for sig in signals:
            loop.remove_signal_handler(sig)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                running = await stack.enter_async_context(
                    serve(config, host=config.host, port=port)
                )
            except OSError as exc:
                why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
                found = f"{config.host}:{port} ({why})"
                raise ConfigError("sandbox.port", "a port free to listen on", found) from None
            _describe(running, out)
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    print("forge-runner sandbox stopped", file=out, flush=True)
    return 0


def _describe(sandbox: RunningSandbox, out: TextIO) -> None:
    """What a user needs to point a config or curl at the sandbox. The first line names the URL."""
    config = sandbox.config
    lines = [
        f"forge-runner sandbox serving on {sandbox.url}",
        f"  gateway    {sandbox.gateway_url}  (also {sandbox.url}/gateway/api/graphql)",
        f"  report     {sandbox.url}/_sandbox/report",
    ]
    for env in config.environments.values():
        scopes = "impersonation allowed" if env.allow_impersonation else "no impersonation"
        lines.append(
            f"  environment {env.name}: client_id {env.client_id}, {scopes}, "
            f"user tokens live {env.token_ttl_s} s"
        )
    for site in config.sites.values():
        lines.append(
            f"  site {site.name}: {len(site.users)} users, {len(site.issues)} issues, "
            f"Jira at {sandbox.jira_base(site.cloud_id)}"
        )
        lines.append(f"    accepted context ARIs: {', '.join(site.context_aris())}")
    limit = config.mint_limit
    lines.append(
        f"  mint limit {limit.limit} per {limit.window_s:g} s per client "
        f"({limit.algorithm}, {limit.failure})"
    )
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), file=out, flush=True)
