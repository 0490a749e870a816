"""One user end to end: what ``forge-runner doctor --site S --user ACCOUNT`` does.

``check_user`` reads the environment's system token, mints one token for the user through the
same ``Minter`` a run uses (so every gateway answer is classified the same way), and calls
``GET /rest/api/3/myself`` as that user. Each step prints what was sent (gateway URL, context
ARI, account ID, Jira URL; never a token) and what came back (request_id/trace_id, ttl, the
account Jira says the token is), and a failure is explained in plain words with its fix.
Returns 0 when both steps pass, 3 when the environment is blocked (no usable system token, or
the gateway can't load the app's permissions in the context), 1 for any other failure; raises
``InputError`` (exit 2) for an unknown site or a malformed account ID.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp

from runner.actions.base import API
from runner.budgets.mint import MintBuckets
from runner.config.configfile import Config, EnvironmentConfig, SiteConfig
from runner.errors import (
    BlockedEnvironmentError,
    ExitCode,
    GatewayError,
    InputError,
    SystemTokenError,
    TransportError,
    UserRefusedError,
)
from runner.events import Event, SystemTokenOk
from runner.jira.client import (
    JiraClient,
    JiraRequest,
    Ok,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
    classify,
    request_url,
)
from runner.job.accounts import account_id_problem
from runner.logs.redact import redact
from runner.minting.gateway import (
    GatewayClient,
    Minted,
    MintOutcome,
    MintRateLimited,
    SystemTokenRejected,
)
from runner.minting.minter import Minter
from runner.minting.system_tokens import SystemTokenProvider, describe_source
from runner.minting.user_tokens import TokenCache

MYSELF = JiraRequest("GET", f"{API}/myself", f"{API}/myself")
# Told with every system-token failure: where those tokens come from and what keeps them fresh.
_TOKEN_ORIGIN = (
    "System tokens arrive only with Forge's invocations of the remote (the x-forge-oauth-system "
    "header) and live at most 4 hours; an hourly scheduledTrigger on the remote endpoint keeps "
    "one fresh (see `forge-runner doctor --manifest`)."
)


class _Printer:
    """Doctor's output: steps, results and fixes, with any secret redacted on the way out."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def line(self, text: str = "") -> None:
        self._out.write(redact(text) + "\n")

    def step(self, n: int, title: str) -> None:
        self.line()
        self.line(f"{n}. {title}")

    def sent(self, label: str, value: str) -> None:
        self.line(f"   {label:<12} {value}")

    def ok(self, text: str) -> None:
        self.line(f"   ✓ {text}")

    def fail(self, text: str, *fixes: str) -> None:
        self.line(f"   ✗ {text}")
        for fix in fixes:
            self.line(f"     fix: {fix}")


class _RecordingGateway(GatewayClient):
    """The gateway client, remembering each classified answer so doctor can show its IDs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[MintOutcome] = []

    async def mint(self, system_token: str, context_ari: str, account_id: str) -> MintOutcome:
        outcome = await super().mint(system_token, context_ari, account_id)
        self.outcomes.append(outcome)
        return outcome


class _Events:
    """The observer: the system token's expiry as the provider reports it."""

    def __init__(self) -> None:
        self.expires_at: float | None = None

    def event(self, ev: Event, /) -> None:
        if isinstance(ev, SystemTokenOk):
            self.expires_at = ev.expires_at


def resolve(config: Config, site_name: str, account: str) -> SiteConfig:
    """The site to check; InputError (exit 2) for an unknown site or a malformed account ID."""
    site = config.sites.get(site_name)
    if site is None:
        known = ", ".join(sorted(config.sites)) or "none are configured"
        raise InputError(f"doctor --site: expected a site of {config.path} ({known}), "
                         f"found {site_name!r}")
    problem = account_id_problem(account)
    if problem:
        raise InputError(f"doctor --user: {problem}")
    return site


async def check_user(config: Config, site_name: str, account: str, out: TextIO) -> int:
    """Mint for ``account`` on ``site_name`` and call /myself as them, printing each step."""
    site = resolve(config, site_name, account)
    env = config.environments[site.environment]
    p = _Printer(out)
    p.line(f"forge-runner doctor: user {account} on site {site.name} "
           f"(environment {env.name}, config {config.path})")
    async with aiohttp.ClientSession() as session:
        provider, events = _system_tokens(env)
        gateway = _RecordingGateway(session, env.gateway_url, messages=config.gateway_messages,
                                    timeout_s=config.runner.request_timeout_s)
        minter = _minter(config, env, gateway, provider, events)
        p.step(1, "System token")
        p.sent("source", _source(env))
        try:
            await provider.get()
        except SystemTokenError as exc:
            _system_token_failed(p, env, exc.reason)
            return ExitCode.BLOCKED
        p.ok(f"read; {_expiry(events.expires_at)}")

        p.step(2, "Mint an offline user token (offlineUserAuthToken)")
        p.sent("gateway", f"POST {env.gateway_url}")
        p.sent("contextIds", f"[{site.context_ari}]")
        p.sent("userId", account)
        token = await _mint(p, minter, gateway, env, site, account)
        if isinstance(token, int):
            return token

        p.step(3, "Call Jira as the user")
        p.sent("request", f"GET {request_url(site, MYSELF.path)}")
        jira = JiraClient(session, timeout_s=config.runner.request_timeout_s)
        return await _myself(p, jira, site, token, account)


def _system_tokens(env: EnvironmentConfig) -> tuple[SystemTokenProvider, _Events]:
    """The environment's system-token provider, set not to wait for a token that isn't there."""
    events = _Events()
    source = replace(env.system_token, max_wait_s=0.0)
    return SystemTokenProvider(source, env.name, observer=events), events


def _minter(config: Config, env: EnvironmentConfig, gateway: GatewayClient,
            provider: SystemTokenProvider, events: _Events) -> Minter:
    """The run's Minter, set for one look: one mint, and a rate limit reported instead of
    waited out."""
    return Minter(
        env,
        gateway=gateway,
        system_tokens=provider,
        bucket=MintBuckets().for_environment(env),
        cache=TokenCache(refresh_margin_s=config.runner.token_refresh_margin_s),
        # A deadline already past: a rate-limited mint raises at once instead of pausing.
        retry=replace(config.retry_mint, attempts=1, deadline_s=0.0),
        observer=events,
    )


def _source(env: EnvironmentConfig) -> str:
    s = env.system_token
    key = f"environments.{env.name}.system_token"
    field = next((name for name in ("env", "file", "command", "serve")
                  if getattr(s, name)), None)
    return f"{describe_source(s)} ({key}.{field})" if field else f"none ({key})"


def _expiry(expires_at: float | None) -> str:
    if expires_at is None:
        return "not a JWT, so its expiry is unknown"
    when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"expires {when} (in {_span(expires_at - time.time())})"


def _span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _system_token_failed(p: _Printer, env: EnvironmentConfig, reason: str) -> None:
    s = env.system_token
    if s.env:
        fix = f"export {s.env} with a fresh system token before running forge-runner"
    elif s.file is not None:
        fix = f"write a fresh system token into {s.file} (whatever delivers it must keep it fresh)"
    elif s.command:
        fix = (f"run `{' '.join(s.command)}` by hand: it must print a fresh system token on "
               "stdout and exit 0")
    elif s.serve:
        fix = (f"check that `forge-runner serve` listens at {s.serve} and has had an invocation "
               f"of installation {s.installation_id} since it started")
    else:
        fix = f"configure environments.{env.name}.system_token (env, file, command or serve)"
    p.fail(f"no usable system token ({reason})", fix, _TOKEN_ORIGIN)


async def _mint(p: _Printer, minter: Minter, gateway: _RecordingGateway, env: EnvironmentConfig,
                site: SiteConfig, account: str) -> str | int:
    """The user's token, or the exit code after explaining why there is none."""
    try:
        token = await minter.token_for(site, account)
    except SystemTokenError as exc:
        _show_ids(p, gateway)
        if _rejected(gateway):
            # No "token:" in printed text: redaction would take what follows for a secret.
            p.fail("the gateway refused the system token with HTTP 401 (expired, revoked, or "
                   f"not a token of environment {env.name}'s app and environment)",
                   f"give environments.{env.name}.system_token a token from a recent invocation "
                   "of this environment's remote (development, staging and production each have "
                   f"their own), and check gateway_url ({env.gateway_url})", _TOKEN_ORIGIN)
        else:
            _system_token_failed(p, env, exc.reason)
        return ExitCode.BLOCKED
    except BlockedEnvironmentError as exc:
        _show_ids(p, gateway)
        p.fail("the gateway can't load the app's permissions in this context; environment "
               f"{env.name} is blocked (a run would stop minting at this first refusal)")
        for line in exc.diagnostic.splitlines():
            p.line(f"     {line.strip()}")
        return ExitCode.BLOCKED
    except UserRefusedError as exc:
        _show_ids(p, gateway)
        p.fail(f"the gateway won't mint for this user: {exc.reason}", _user_fix(exc.reason, site))
        return ExitCode.FAILED
    except TransportError as exc:
        _show_ids(p, gateway)
        limited = [o for o in gateway.outcomes if isinstance(o, MintRateLimited)]
        if limited or exc.status == 429:
            _rate_limited(p, env, limited[-1] if limited else None)
        else:
            p.fail(f"no answer from the gateway: {exc.reason}",
                   f"check gateway_url ({env.gateway_url}) and the network; a 5xx or timeout "
                   "is usually passing: run doctor again (a run retries these by itself)")
        return ExitCode.FAILED
    except GatewayError as exc:
        p.fail(f"the gateway answered in a way forge-runner does not understand: {exc}",
               "if the message names a rate limit or a user problem, add its wording to "
               "[gateway_messages]; otherwise give the request_id to Atlassian support")
        return ExitCode.FAILED
    if _rejected(gateway):
        p.line("   (the gateway refused the first system token; a fresh read of the source "
               "worked)")
    minted = next((o for o in reversed(gateway.outcomes) if isinstance(o, Minted)), None)
    if minted is not None:
        p.ok(f"minted: ttl {minted.ttl_s:g} s, request_id={minted.request_id} "
             f"trace_id={minted.trace_id}")
    return token


def _rejected(gateway: _RecordingGateway) -> bool:
    return any(isinstance(o, SystemTokenRejected) for o in gateway.outcomes)


def _show_ids(p: _Printer, gateway: _RecordingGateway) -> None:
    for outcome in gateway.outcomes:
        ids = outcome.ids if not isinstance(outcome, Minted) else outcome
        p.sent("answer", f"{type(outcome).__name__}: request_id={ids.request_id} "
               f"trace_id={ids.trace_id}")


def _user_fix(reason: str, site: SiteConfig) -> str:
    text = reason.lower()
    if "deactivated" in text:
        return ("Atlassian never mints for a deactivated account: reactivate it in "
                "admin.atlassian.com, or leave this user's rows out (a run skips them with this "
                "reason)")
    if "access" in text:
        return ("the user can't use the app: an app not distributed through the Marketplace "
                "can impersonate only its contributors; otherwise give the user access to Jira "
                f"on site {site.name}, or leave their rows out")
    if "not found" in text or "unknown" in text:
        return (f"no such account on site {site.name}: check the account ID (from the user's "
                "profile URL, or /rest/api/3/user/search) and that the user belongs to this "
                "site's organization")
    return ("this user can't be impersonated (anonymous users, users of other apps, and scopes "
            "needing per-user consent such as read:me never can); leave their rows out")


def _rate_limited(p: _Printer, env: EnvironmentConfig, outcome: MintRateLimited | None) -> None:
    wait = ""
    if outcome is not None and outcome.retry_after_s is not None:
        wait = f"; Retry-After: {outcome.retry_after_s:g} s"
    elif outcome is not None and outcome.reset_at is not None:
        wait = f"; the limit resets in {_span(outcome.reset_at - time.time())}"
    shape = f" ({outcome.shape})" if outcome is not None else ""
    p.fail(f"rate limited{shape}: the mint budget of environment {env.name}'s OAuth client is "
           f"spent{wait}",
           f"another run minting in this environment (bucket {env.bucket}, {env.mint_limit} per "
           f"{env.mint_window_s:g} s) is the likely cause; wait and run doctor again (a run "
           "pauses and retries by itself)")


async def _myself(p: _Printer, jira: JiraClient, site: SiteConfig, token: str,
                  account: str) -> int:
    try:
        response = await jira.send(site, token, MYSELF)
    except TransportError as exc:
        p.fail(f"no answer from Jira: {exc.reason}",
               f"check sites.{site.name}.api_base_url ({site.api_base_url}) and the network")
        return ExitCode.FAILED
    outcome = classify(MYSELF, response, time.time(), site=site.name)
    base = f"sites.{site.name}.api_base_url ({site.api_base_url})"
    if isinstance(outcome, Ok):
        body = response.body if isinstance(response.body, dict) else {}
        said = body.get("accountId")
        name = body.get("displayName") or "no display name"
        if said != account:
            p.fail(f"Jira says this token acts as {said!r}, not {account}",
                   f"check that {base} belongs to the site the token was minted for")
            return ExitCode.FAILED
        active = "" if body.get("active", True) else " (inactive)"
        p.ok(f"HTTP {response.status}: Jira says this token is {said} ({name}){active}")
        p.line()
        p.line(f"All good: forge-runner can act as {account} on site {site.name}.")
        return ExitCode.OK
    if isinstance(outcome, Unauthorized):
        category = f" ({outcome.failure_category})" if outcome.failure_category else ""
        p.fail(f"Jira answered HTTP 401{category}: it does not accept the token just minted",
               f"a token works only on the site it was minted for: the mint used context ARI "
               f"{site.context_ari} (cloud ID {site.cloud_id}), so {base} must be that site's "
               f"API base URL (https://api.atlassian.com/ex/jira/{site.cloud_id}); if it is, "
               "the token expired or was revoked at once: run doctor again")
    elif isinstance(outcome, Permanent) and outcome.status == 403:
        p.fail(f"Jira answered HTTP 403{_said(outcome.messages)}",
               "the token's scopes don't cover GET /myself: declare 'read:jira-user' with "
               "allowImpersonation: true in the manifest, `forge deploy`, then `forge install "
               "--upgrade` on the site")
    elif isinstance(outcome, Permanent) and outcome.status == 404:
        p.fail(f"Jira answered HTTP 404{_said(outcome.messages)}",
               f"no such site or path: check {base} and sites.{site.name}.cloud_id")
    elif isinstance(outcome, Permanent):
        p.fail(f"Jira answered HTTP {outcome.status}{_said(outcome.messages)}",
               f"check {base}")
    elif isinstance(outcome, RateLimited):
        wait = f"; Retry-After: {outcome.retry_after_s:g} s" if outcome.retry_after_s else ""
        p.fail(f"Jira answered HTTP 429 ({outcome.reason or 'no reason given'}){wait}",
               "Jira's limits are spent, probably by a run in progress: wait and run doctor "
               "again (a run waits them out by itself)")
    elif isinstance(outcome, Transient):
        p.fail(f"Jira answered HTTP {outcome.status}",
               "a server error is usually passing: run doctor again")
    return ExitCode.FAILED


def _said(messages: tuple[str, ...]) -> str:
    return f": {'; '.join(messages)}" if messages else ""
