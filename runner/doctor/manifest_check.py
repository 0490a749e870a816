"""The checks of ``forge-runner doctor --manifest``: a Forge manifest against a job's needs.

``check_manifest`` gives one ``Check`` per requirement of atlassian-facts.md sections 1-2: each
scope the job's actions need, declared as a map entry with ``allowImpersonation: true``;
``read:app-system-token``; an endpoint that receives system tokens; a scheduled trigger that
invokes it at least hourly; when the config has ``[serve.routes]``, each endpoint's route among
them. A failing check carries the exact YAML to write; ``render`` prints
the checklist with a closing reminder to deploy and upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from runner.doctor.manifest import Manifest, describe
from runner.doctor.scopes import ScopeNeeds

SYSTEM_TOKEN_SCOPE = "read:app-system-token"
# Tokens live at most 4 hours and a trigger's invocation carries one with at least 2 hours
# left, so a trigger at least hourly keeps a valid one at hand; day and week leave gaps.
FRESH_INTERVALS = ("fiveMinute", "hour")
INTERVAL_WORDS = {"fiveMinute": "five minutes", "hour": "hour", "day": "day", "week": "week"}

Status = Literal["pass", "fail", "unknown", "note"]
MARKS: Mapping[Status, str] = {"pass": "✓", "fail": "✗", "unknown": "?", "note": "·"}


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``fix`` says what to do (YAML included) when it fails."""

    section: str
    status: Status
    title: str
    fix: str = ""


SCOPES = "Scopes the job's actions need (classic scopes, as Jira's REST spec lists them)"
TOKENS = "System tokens reach the remote"


def _yaml(*lines: str) -> str:
    return "\n".join(lines)


def _scope_entry(scope: str, impersonate: bool) -> list[str]:
    if impersonate:
        return [f"    '{scope}':", "      allowImpersonation: true"]
    # Assumed: a scope used without impersonation is a map entry with no options.
    return [f"    '{scope}': {{}}"]


def _scope_fix(scope: str) -> str:
    return _yaml("permissions:", "  scopes:", *_scope_entry(scope, True))


def _scope_check(manifest: Manifest, scope: str, users: Sequence[str]) -> Check:
    needed = f"(needed by {', '.join(users)})"
    form = manifest.scopes_form
    declared = scope in manifest.scopes
    if form == "map" and declared:
        value = manifest.scopes[scope]
        if isinstance(value, dict) and value.get("allowImpersonation") is True:
            return Check(SCOPES, "pass", f"{scope}: a map entry with allowImpersonation: true "
                         f"{needed}")
        if isinstance(value, dict) and "allowImpersonation" not in value:
            why = "a map entry without allowImpersonation"
        elif isinstance(value, dict):
            why = f"allowImpersonation is {describe(value['allowImpersonation'])}, not true"
        else:
            why = f"a map entry whose value is {describe(value)}, not a map"
    elif declared and form == "list":
        why = "a list entry, which can't allow impersonation"
    elif declared and form == "string":
        why = "a plain string (permissions.scopes: '...'), which can't allow impersonation"
    else:
        why = "not declared"
    return Check(SCOPES, "fail", f"{scope}: {why} {needed}",
                 "offline tokens carry only scopes that allow impersonation; write:\n"
                 + _scope_fix(scope))


def _as_map_fix(manifest: Manifest, needs: ScopeNeeds) -> Check:
    kind = "a list" if manifest.scopes_form == "list" else "a plain string"
    entries: list[str] = ["permissions:", "  scopes:"]
    names = list(dict.fromkeys([*manifest.scopes, *needs.scopes, SYSTEM_TOKEN_SCOPE]))
    for name in names:
        entries += _scope_entry(name, name in needs.scopes)
    return Check(SCOPES, "fail", f"permissions.scopes is {kind}, not a map",
                 "impersonation needs the map form; every scope becomes a key:\n"
                 + _yaml(*entries))


def _system_token_scope(manifest: Manifest) -> Check:
    if SYSTEM_TOKEN_SCOPE in manifest.scopes:
        return Check(TOKENS, "pass", f"{SYSTEM_TOKEN_SCOPE} is declared")
    # The map form even if the manifest has a list: impersonation needs the map anyway.
    return Check(TOKENS, "fail", f"{SYSTEM_TOKEN_SCOPE} is not declared: Forge sends the remote "
                 "no system token, so nothing can be minted",
                 "add it:\n" + _yaml("permissions:", "  scopes:",
                                      *_scope_entry(SYSTEM_TOKEN_SCOPE, False)))


def _endpoint_fix(key: str, remote: str) -> str:
    return _yaml(
        "modules:", "  endpoint:",
        f"    - key: {key}", f"      remote: {remote}",
        "      auth:", "        appSystemToken:", "          enabled: true",
    )


def _endpoint_checks(manifest: Manifest) -> list[Check]:
    if not manifest.endpoints:
        return [Check(TOKENS, "fail", "no remote endpoint: modules.endpoint declares none, so "
                      "Forge invokes no remote and sends no system token",
                      "declare the remote and an endpoint on it:\n" + _endpoint_fix(
                          "forge-runner", "forge-runner")
                      + "\n" + _yaml("remotes:", "  - key: forge-runner",
                                     "    baseUrl: https://forge-runner.example.com"))]
    checks: list[Check] = []
    any_system = any(e.gets_system_token for e in manifest.endpoints)
    for e in manifest.endpoints:
        remote = e.remote or e.key
        if e.remote is None or e.remote not in manifest.remotes:
            said = (f"names remote {e.remote}, which remotes: does not declare" if e.remote
                    else "names no remote")
            checks.append(Check(TOKENS, "fail", f"endpoint {e.key} {said}",
                                "declare the remote and name it in the endpoint:\n"
                                + _yaml("modules:", "  endpoint:", f"    - key: {e.key}",
                                        f"      remote: {remote}", "remotes:",
                                        f"  - key: {remote}",
                                        "    baseUrl: https://<your remote's URL>")))
        if e.gets_system_token:
            checks.append(Check(TOKENS, "pass", f"endpoint {e.key} (remote {remote}) receives "
                                "system tokens: auth.appSystemToken.enabled: true"))
        elif e.user_token is True and any_system:
            checks.append(Check(TOKENS, "note", f"endpoint {e.key} receives user tokens only "
                                "(a UI resolver?); forge-runner does not use it"))
        else:
            found = ("absent" if e.system_token is None
                     else f"{describe(e.system_token)}, not true")
            checks.append(Check(TOKENS, "fail", f"endpoint {e.key}: auth.appSystemToken.enabled "
                                f"is {found}, so its invocations carry no system token",
                                "write:\n" + _endpoint_fix(e.key, remote)))
    return checks


def _trigger_check(manifest: Manifest) -> Check:
    endpoints = {e.key: e for e in manifest.endpoints}
    problems: list[str] = []
    for t in manifest.triggers:
        target = endpoints.get(t.endpoint) if t.endpoint else None
        if t.endpoint is None:
            problems.append(f"{t.key} runs function {t.function or '(none)'}, a Forge function, "
                            "not the remote")
        elif target is None:
            problems.append(f"{t.key} names endpoint {t.endpoint}, which modules.endpoint "
                            "does not declare")
        elif not target.gets_system_token:
            problems.append(f"{t.key}'s endpoint {t.endpoint} receives no system token")
        elif t.interval not in FRESH_INTERVALS:
            every = INTERVAL_WORDS.get(t.interval) if isinstance(t.interval, str) else None
            problems.append(f"{t.key} runs every {every}: too rare, system tokens live at most "
                            "4 hours" if every else
                            f"{t.key}'s interval is {describe(t.interval)}")
        else:
            return Check(TOKENS, "pass", f"scheduledTrigger {t.key} invokes endpoint "
                         f"{t.endpoint} every {INTERVAL_WORDS[t.interval]}: each invocation "
                         "brings a fresh system token")
    good = [e.key for e in manifest.endpoints if e.gets_system_token]
    endpoint = good[0] if good else (manifest.endpoints[0].key if manifest.endpoints
                                     else "forge-runner")
    title = ("no scheduledTrigger invokes the remote directly at least hourly"
             + (f" ({'; '.join(problems)})" if problems else " (modules.scheduledTrigger "
                "declares none)"))
    return Check(TOKENS, "fail", title,
                 "system tokens arrive only when Forge invokes the remote and live at most 4 "
                 "hours; an hourly trigger on the endpoint keeps one fresh:\n"
                 + _yaml("modules:", "  scheduledTrigger:", "    - key: refresh-system-token",
                         f"      endpoint: {endpoint}", "      interval: hour"))


ROUTES = "Routes the remote serves ([serve.routes] of the config)"


def _route_checks(manifest: Manifest, routes: Mapping[str, str]) -> list[Check]:
    """Each endpoint's route.path against the config's [serve.routes] (path -> kind): Forge
    calls the remote's baseUrl + route.path, and serve answers 404 for any other path."""
    checks: list[Check] = []
    served = ", ".join(routes) or "none"
    for e in manifest.endpoints:
        if e.route is None:
            checks.append(Check(ROUTES, "fail", f"endpoint {e.key} has no route.path, so Forge "
                                f"invokes the remote's root, which serve does not route "
                                f"(it serves {served})",
                                "name one of the config's routes:\n" + _yaml(
                                    "modules:", "  endpoint:", f"    - key: {e.key}",
                                    "      route:", f"        path: {next(iter(routes), '/')}")))
        elif e.route in routes:
            checks.append(Check(ROUTES, "pass", f"endpoint {e.key} invokes {e.route}, a "
                                f"{routes[e.route]} route of [serve.routes]"))
        else:
            checks.append(Check(ROUTES, "fail", f"endpoint {e.key} invokes {e.route}, which "
                                f"[serve.routes] does not route (it serves {served}): every "
                                "invocation gets 404",
                                "make route.path one of the config's routes, or add a "
                                "[[serve.routes]] with path = " + f'"{e.route}"'))
    invoked = {e.route for e in manifest.endpoints}
    for path, kind in routes.items():
        if path not in invoked:
            checks.append(Check(ROUTES, "note", f"{kind} route {path} of [serve.routes] is "
                                "invoked by no endpoint of the manifest"))
    return checks


def check_manifest(manifest: Manifest, needs: ScopeNeeds,
                   routes: Mapping[str, str] | None = None) -> list[Check]:
    """Every requirement, in reading order: scopes, then what brings system tokens, then (given
    the config's [serve.routes] as path -> kind) that each endpoint's route is served."""
    checks = [_scope_check(manifest, scope, users) for scope, users in needs.scopes.items()]
    if manifest.scopes_form in ("list", "string") and needs.scopes:
        checks.append(_as_map_fix(manifest, needs))
    for unknown in needs.undetermined:
        checks.append(Check(SCOPES, "unknown", f"{unknown.action}: scope could not be "
                            f"determined ({unknown.reason})",
                            "look up the operations it calls in Jira's REST docs ('OAuth scopes "
                            "required') and declare each scope with allowImpersonation: true"))
    checks.append(_system_token_scope(manifest))
    checks += _endpoint_checks(manifest)
    checks.append(_trigger_check(manifest))
    if routes:
        checks += _route_checks(manifest, routes)
    return checks


REMINDER = (
    "After changing scopes: run `forge deploy` for each environment, then "
    "`forge install --upgrade` on each site. An installation keeps the scopes of the version "
    "it runs until it is upgraded, and mints fail with 'Could not load permissions' until then."
)


def render(manifest: Manifest, job: str, checks: Sequence[Check]) -> str:
    """The checklist: one line per check, its fix indented below it, and the reminder."""
    lines = [f"Forge manifest {manifest.path}, for job {job}"]
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            lines += ["", section]
        lines.append(f"  {MARKS[check.status]} {check.title}")
        if check.fix and check.status in ("fail", "unknown"):
            first, *rest = check.fix.splitlines()
            lines.append(f"      fix: {first}")
            lines += [f"        {line}" for line in rest]
    failed = sum(c.status == "fail" for c in checks)
    unknown = sum(c.status == "unknown" for c in checks)
    lines += ["", f"Reminder: {REMINDER}", ""]
    if failed:
        lines.append(f"{failed} check{'s' if failed != 1 else ''} failed.")
    else:
        lines.append("Every check passed.")
    if unknown:
        lines.append(f"{unknown} action{'s' if unknown != 1 else ''} with scopes that could not "
                     "be determined: check those by hand.")
    return "\n".join(lines) + "\n"


def passed(checks: Sequence[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)
