"""The system-token provider: sources, JWT expiry, re-reads, waiting, and failing safely."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from structlog.testing import capture_logs

from runner.budgets import ManualClock
from runner.config.configfile import SystemTokenSource
from runner.errors import SystemTokenError
from runner.events import SystemTokenOk, SystemTokenWaiting
from runner.minting.system_tokens import SystemTokenProvider
from tests.fakes import Events


def system_jwt(exp: float, tag: str = "a") -> str:
    """A system-token-shaped JWT expiring at ``exp`` (signed with a test key)."""
    return jwt.encode({"exp": int(exp), "tag": tag}, "k" * 32, algorithm="HS256")


def provider(source: SystemTokenSource, clock: ManualClock, events: Events | None = None,
             **kwargs: Any) -> SystemTokenProvider:
    return SystemTokenProvider(source, "dev", clock=clock, observer=events, **kwargs)


async def test_env_source_and_opaque_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token from an environment variable is used; a non-JWT one with unknown expiry."""
    monkeypatch.setenv("FORGE_TEST_SYSTEM_TOKEN", "  opaque-system-token-value\n")
    events = Events()
    p = provider(SystemTokenSource(env="FORGE_TEST_SYSTEM_TOKEN"), ManualClock(), events)
    assert await p.get() == "opaque-system-token-value"
    assert ("dev", None) in [(e.environment, e.expires_at) for e in events.of(SystemTokenOk)]


async def test_file_source_relative_to_cwd(tmp_path: Path) -> None:
    """A relative token file is read from the source's cwd, whitespace stripped."""
    clock = ManualClock()
    token = system_jwt(clock.now() + 3600)
    (tmp_path / "token.txt").write_text(token + "\n")
    p = provider(SystemTokenSource(file=Path("token.txt"), cwd=tmp_path), clock)
    assert await p.get() == token


async def test_command_source_runs_without_shell_from_cwd(tmp_path: Path) -> None:
    """A command source runs its argument list from cwd; its stripped stdout is the token."""
    clock = ManualClock()
    token = system_jwt(clock.now() + 3600)
    (tmp_path / "token.txt").write_text(token)
    script = "import pathlib; print(pathlib.Path('token.txt').read_text() + '  ')"
    source = SystemTokenSource(command=(sys.executable, "-c", script), cwd=tmp_path)
    assert await provider(source, clock).get() == token


async def test_reread_near_expiry_picks_up_the_new_token(tmp_path: Path) -> None:
    """Near its exp the source is read again (at most every reread_every_s) for a newer token."""
    clock = ManualClock()
    path = tmp_path / "token"
    old = system_jwt(clock.now() + 700, "old")
    path.write_text(old)
    p = provider(SystemTokenSource(file=path), clock, refresh_margin_s=600.0,
                 reread_every_s=30.0, min_validity_s=60.0)
    assert await p.get() == old
    clock.advance(200.0)  # 500 s left: inside the refresh margin, nothing newer yet
    assert await p.get() == old
    new = system_jwt(clock.now() + 14400, "new")
    path.write_text(new)
    clock.advance(10.0)  # read 10 s ago: no re-read yet
    assert await p.get() == old
    clock.advance(30.0)
    assert await p.get() == new


async def test_expired_token_waits_for_a_fresh_one(tmp_path: Path) -> None:
    """With only an expired token at hand, get() waits (saying so) until a valid one arrives."""
    clock = ManualClock()
    path = tmp_path / "token"
    path.write_text(system_jwt(clock.now() - 10))
    fresh = system_jwt(clock.now() + 14400, "fresh")
    events = Events()
    events.on_waiting = lambda: path.write_text(fresh)
    p = provider(SystemTokenSource(file=path, max_wait_s=600.0), clock, events)
    with capture_logs() as logs:
        assert await p.get() == fresh
    assert events.count(SystemTokenWaiting) == 1
    waiting = [e for e in logs if e["event"] == "runner.system_token.waiting"]
    assert waiting and "expired" in waiting[0]["reason"]


async def test_no_valid_token_waits_then_fails(tmp_path: Path) -> None:
    """Without a valid token for max_wait_s, get() raises SystemTokenError; later callers
    fail at once instead of each waiting again."""
    clock = ManualClock()
    path = tmp_path / "token"
    stale = system_jwt(clock.now() + 30)  # less than min_validity_s left
    path.write_text(stale)
    events = Events()
    p = provider(SystemTokenSource(file=path, max_wait_s=120.0), clock, events,
                 min_validity_s=60.0)
    t0 = clock.now()
    with pytest.raises(SystemTokenError) as caught:
        await p.get()
    assert clock.now() - t0 == pytest.approx(120.0)
    assert events.count(SystemTokenWaiting) >= 3  # polled with backoff, said so each time
    assert stale not in str(caught.value)
    t1 = clock.now()
    with pytest.raises(SystemTokenError):
        await p.get()
    assert clock.now() == t1


async def test_invalidate_forces_a_reread_and_never_reuses_the_refused_token(
    tmp_path: Path,
) -> None:
    """After the gateway's 401 the token is dropped; while the source still holds it, get()
    waits; the next token the source holds is used."""
    clock = ManualClock()
    path = tmp_path / "token"
    refused = system_jwt(clock.now() + 3600, "refused")
    path.write_text(refused)
    replacement = system_jwt(clock.now() + 3600, "replacement")
    events = Events()
    events.on_waiting = lambda: path.write_text(replacement)
    p = provider(SystemTokenSource(file=path), clock, events)
    assert await p.get() == refused
    p.invalidate(refused)
    assert await p.get() == replacement
    assert events.count(SystemTokenWaiting) == 1


async def test_failing_command_never_shows_its_output(tmp_path: Path) -> None:
    """A command that fails names its exit code, never its stdout or anything token-like."""
    clock = ManualClock()
    leaked = system_jwt(clock.now() + 3600)
    script = (
        f"import sys; print({leaked!r}); print('could not use ' + {leaked!r}, file=sys.stderr);"
        " sys.exit(3)"
    )
    source = SystemTokenSource(command=(sys.executable, "-c", script), max_wait_s=0.0)
    with capture_logs() as logs, pytest.raises(SystemTokenError) as caught:
        await provider(source, clock).get()
    assert "exited 3" in str(caught.value)
    assert "could not use [redacted]" in str(caught.value)
    assert leaked not in str(caught.value)
    assert all(leaked not in repr(e) for e in logs)


async def test_hanging_command_times_out(tmp_path: Path) -> None:
    """A command that does not answer within its timeout counts as no token."""
    source = SystemTokenSource(command=(sys.executable, "-c", "import time; time.sleep(30)"),
                               max_wait_s=0.0)
    with pytest.raises(SystemTokenError) as caught:
        await provider(source, ManualClock(), command_timeout_s=0.3).get()
    assert "took over 0.3 s" in str(caught.value)


async def test_an_empty_file_is_waited_for_not_fatal(tmp_path: Path) -> None:
    """A token file that exists but holds no token yet is polled for, not a failure."""
    clock = ManualClock()
    path = tmp_path / "token"
    path.write_text("")
    fresh = system_jwt(clock.now() + 3600)
    events = Events()
    events.on_waiting = lambda: path.write_text(fresh)
    p = provider(SystemTokenSource(file=path, max_wait_s=60.0), clock, events)
    assert await p.get() == fresh


@pytest.mark.parametrize("source", ["env", "file", "command", "not-executable"])
async def test_a_source_that_cannot_heal_fails_at_once(tmp_path: Path, source: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable, a missing file, a command not found or not executable fail at the
    first read, saying so, without waiting max_wait_s (no waiting event, no clock advance)."""
    monkeypatch.delenv("FORGE_TEST_UNSET_TOKEN", raising=False)
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho x\n")
    sources = {
        "env": (SystemTokenSource(env="FORGE_TEST_UNSET_TOKEN", max_wait_s=600.0),
                "environment variable FORGE_TEST_UNSET_TOKEN is not set"),
        "file": (SystemTokenSource(file=tmp_path / "absent", max_wait_s=600.0),
                 "No such file or directory"),
        "command": (SystemTokenSource(command=(str(tmp_path / "nope"),), max_wait_s=600.0),
                    "can't be run: No such file or directory"),
        "not-executable": (SystemTokenSource(command=(str(script),), max_wait_s=600.0),
                           "can't be run: Permission denied"),
    }
    config, said = sources[source]
    clock = ManualClock()
    start = clock.now()
    events = Events()
    with pytest.raises(SystemTokenError, match=said):
        await provider(config, clock, events).get()
    assert events.count(SystemTokenWaiting) == 0
    assert clock.now() == start
