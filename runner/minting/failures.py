"""Why a mint failed, in words: what two final failures share, and what to check when the
gateway can't load the app user's permissions."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from runner.config.configfile import SiteConfig
from runner.errors import GatewayError, TransportError
from runner.minting.gateway import ContextRefused

_WORKSPACE_ARI = re.compile(r"^ari:cloud:jira:[^:/\s]+:workspace/[^/\s]+$")

MintFailure = GatewayError | TransportError


def failure_kind(exc: MintFailure) -> str:
    """What two final mint failures share when they fail "the same way": the error's class and
    its status, or the gateway reason's opening words (before its detail)."""
    if isinstance(exc, TransportError):
        return f"{type(exc).__name__}:{exc.status}"
    return f"{type(exc).__name__}:{exc.reason.split(':', 1)[0]}"


def again(exc: MintFailure) -> Callable[[], MintFailure]:
    """A maker of ``exc`` afresh: re-raising one object would grow its traceback each time."""
    if isinstance(exc, GatewayError):
        return functools.partial(type(exc), exc.reason, request_id=exc.request_id,
                                 trace_id=exc.trace_id)
    return functools.partial(type(exc), exc.what, exc.reason, status=exc.status)


def context_diagnostic(site: SiteConfig, outcome: ContextRefused) -> str:
    """What to check when the gateway can't load the app user's permissions: the ARIs sent
    and the four causes found for that message (atlassian-facts.md section 1)."""
    aris = ", ".join(outcome.context_aris)
    expected = f"ari:cloud:jira:{site.cloud_id}:workspace/{site.cloud_id}"
    form_ok = all(_WORKSPACE_ARI.match(a) for a in outcome.context_aris)
    form = (
        "the ARI has the workspace form; check it names this site's cloud ID"
        if form_ok
        else f"the ARI sent is not of the workspace form; expected {expected}"
    )
    ids = ""
    if outcome.ids.request_id or outcome.ids.trace_id:
        ids = f"\n  request_id={outcome.ids.request_id} trace_id={outcome.ids.trace_id}"
    return (
        f"the gateway refused a mint on site {site.name}: {outcome.message}\n"
        f"  context ARIs sent: [{aris}]{ids}\n"
        "  check, in order:\n"
        f"  1. ARI form (sites.{site.name}.context_ari): {form}.\n"
        "  2. Impersonation scopes: the manifest's permissions.scopes is a map and every scope "
        "the job uses has allowImpersonation: true.\n"
        "  3. Deployed: `forge deploy` ran for this environment after that manifest change.\n"
        "  4. Installation upgraded: `forge install --upgrade` ran on the site so it uses the "
        "version with those scopes."
    )
