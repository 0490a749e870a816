"""An environment's system token: read from its source, kept fresh, waited for when missing.

System tokens arrive only when Forge invokes the remote and live at most 4 hours, with no
refresh endpoint (atlassian-facts.md section 2). So the provider reads whatever the configured
source (an environment variable, a file, a command, or a ``forge-runner serve`` process on this
host, over loopback) holds now, reads it again when the token nears its ``exp`` or the gateway
answers 401, and, while no valid token is to be had, waits for one (polling the source with
backoff) instead of failing the work, up to ``max_wait_s``. A source that can't heal by waiting
(an environment variable not set, a missing file, a command not found or not executable) fails
at once: ``BrokenSourceError``. A serve process is told of a token the gateway refused before it
is asked again, so it drops that token for every job it serves.

The token is treated as opaque apart from the JWT ``exp``, read without verifying anything: the
gateway is the one that checks it. A token that is not a JWT is accepted with unknown expiry.
Nothing here logs a token or a command's raw output.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psycopg

from runner.aio import in_thread, to_the_end
from runner.budgets import Clock, SystemClock
from runner.config.configfile import SystemTokenSource
from runner.errors import SealKeyError, SystemTokenError
from runner.events import Emitter, Observer, SystemTokenOk, SystemTokenWaiting
from runner.journal.pgurl import safe_url
from runner.logs.redact import register_secret
from runner.minting import sealed
from runner.tokenroute import fetch_system_token, report_refused_token

# Anything that looks like a credential in a command's stderr is cut out before it is shown.
_SECRETISH = re.compile(r"[A-Za-z0-9_\-\.=+/]{20,}")


class BrokenSourceError(SystemTokenError):
    """The source can't hold a token however long one waits: said at once, not after
    ``max_wait_s``."""


@dataclass(frozen=True)
class _Held:
    token: str = field(repr=False)
    expires_at: float | None  # None: not a JWT or no exp, expiry unknown


class SystemTokenProvider:
    """The current system token of one environment."""

    def __init__(
        self,
        source: SystemTokenSource,
        environment: str,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        min_validity_s: float = 60.0,
        refresh_margin_s: float = 600.0,
        reread_every_s: float = 30.0,
        command_timeout_s: float = 30.0,
        poll_initial_s: float = 1.0,
        poll_max_s: float = 30.0,
    ) -> None:
        """``min_validity_s``: a token with less life left than this is not handed out.
        ``refresh_margin_s``: within this of expiry the source is read again (at most every
        ``reread_every_s``) for a newer token, while the current one is still used."""
        self._source = source
        self.environment = environment
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._min_validity = min_validity_s
        self._refresh_margin = max(refresh_margin_s, min_validity_s)
        self._reread_every = reread_every_s
        self._command_timeout = command_timeout_s
        self._poll_initial = poll_initial_s
        self._poll_max = poll_max_s
        self._lock = asyncio.Lock()
        self._held: _Held | None = None
        self._last_read = -math.inf
        # Digests of tokens the gateway refused: the source may keep serving one for a while.
        self._rejected: set[str] = set()
        # Refused tokens a serve source has not been told of yet (told on the next read).
        self._unreported: list[str] = []
        self._waiting_since: float | None = None

    async def get(self) -> str:
        """A system token valid for at least ``min_validity_s``, waiting for one if need be.

        Raises SystemTokenError once no valid token has been had for ``max_wait_s``."""
        held = self._held
        if held is not None and self._fresh(held):
            return held.token
        async with self._lock:
            return await self._get_locked()

    def invalidate(self, token: str) -> None:
        """The gateway refused ``token`` (HTTP 401): never hand it out again, read anew."""
        digest = _digest(token)
        if (self._source.serve or self._source.sealed) and digest not in self._rejected:
            self._unreported.append(token)
        self._rejected.add(digest)
        if self._held is not None and self._held.token == token:
            self._held = None
            self._last_read = -math.inf

    # -- inside the lock ----------------------------------------------------------------------

    async def _get_locked(self) -> str:
        delay = self._poll_initial
        while True:
            now = self._clock.now()
            held = self._held
            if held is not None and self._fresh(held):
                return held.token
            recently_read = now - self._last_read < self._reread_every
            if held is not None and self._usable(held) and recently_read:
                return held.token
            reason = await self._read(now)
            held = self._held
            if held is not None and self._usable(held):
                self._waiting_since = None
                return held.token
            if self._waiting_since is None:
                self._waiting_since = now
            waited = now - self._waiting_since
            if waited >= self._source.max_wait_s:
                raise SystemTokenError(self.environment, reason, waited_s=waited)
            self._emit(SystemTokenWaiting(environment=self.environment, reason=reason,
                                          waited_s=round(waited, 1)))
            # Every waiter shares one wait window: after it is over, callers fail at once
            # instead of each waiting max_wait_s in turn.
            remaining = self._source.max_wait_s - waited
            await self._clock.sleep(min(delay, remaining))
            delay = min(self._poll_max, delay * 2)

    def _fresh(self, held: _Held) -> bool:
        return held.expires_at is None or held.expires_at - self._clock.now() > self._refresh_margin

    def _usable(self, held: _Held) -> bool:
        return held.expires_at is None or held.expires_at - self._clock.now() > self._min_validity

    async def _read(self, now: float) -> str:
        """Read the source once; adopt its token if it is new and not refused. Returns why
        there is no usable token, for the case there isn't."""
        self._last_read = now
        try:
            token = await self._read_source()
        except BrokenSourceError:
            raise
        except SystemTokenError as exc:
            return exc.reason
        if not token:
            remote = self._source.serve or self._source.sealed
            empty = "holds no token yet" if remote else "is empty"
            return f"{self._describe()} {empty}"
        register_secret(token)
        if _digest(token) in self._rejected:
            return f"{self._describe()} still holds the token the gateway refused"
        expires_at = jwt_exp(token)
        held = self._held
        if held is not None and held.token == token:
            return self._why_unusable(held)
        candidate = _Held(token, expires_at)
        if not self._usable(candidate):
            return self._why_unusable(candidate)
        # Keep whichever token lives longer: a source may serve an older one than we hold.
        if held is None or not self._usable(held) or _later(candidate, held):
            self._held = candidate
            self._emit(SystemTokenOk(environment=self.environment, expires_at=expires_at,
                                     source=self._describe()))
        return self._why_unusable(self._held) if self._held else "no token"

    def _why_unusable(self, held: _Held) -> str:
        if held.expires_at is None:
            return "token usable"
        left = held.expires_at - self._clock.now()
        if left <= 0:
            return f"the token from {self._describe()} expired {-left:.0f} s ago"
        return f"the token from {self._describe()} has only {left:.0f} s left"

    def _describe(self) -> str:
        return describe_source(self._source)

    def _path(self, file: Path) -> Path:
        return _source_path(self._source, file)

    async def _read_source(self) -> str:
        s = self._source
        if s.env:
            # This process's environment can't change under it: waiting would bring nothing.
            if s.env not in os.environ:
                raise BrokenSourceError(self.environment, f"{self._describe()} is not set")
            return os.environ[s.env].strip()
        if s.file is not None:
            try:
                return (await in_thread(self._path(s.file).read_text)).strip()
            except OSError as exc:
                kind = (BrokenSourceError if isinstance(exc, FileNotFoundError)
                        else SystemTokenError)
                raise kind(
                    self.environment, f"{self._describe()}: {exc.strerror or exc}"
                ) from exc
        if s.command:
            return await self._run_command(s.command)
        if s.serve:
            return await self._ask_serve(s.serve)
        if s.sealed:
            return await self._read_sealed()
        raise SystemTokenError(self.environment, "no system-token source configured")

    async def _run_command(self, command: tuple[str, ...]) -> str:
        try:
            async with asyncio.timeout(self._command_timeout):
                returncode, stdout, stderr = await _run_process(_resolve(command),
                                                                self._source.cwd)
        except TimeoutError as exc:
            raise SystemTokenError(
                self.environment, f"{self._describe()} took over {self._command_timeout:g} s"
            ) from exc
        except (FileNotFoundError, PermissionError) as exc:
            # Not found or not executable: no later run of it can go otherwise.
            raise BrokenSourceError(
                self.environment, f"{self._describe()} can't be run: {exc.strerror or exc}"
            ) from exc
        except OSError as exc:
            raise SystemTokenError(
                self.environment, f"{self._describe()}: {exc.strerror or exc}"
            ) from exc
        if returncode != 0:
            raise SystemTokenError(
                self.environment,
                f"{self._describe()} exited {returncode}: {_safe_stderr(stderr)}",
            )
        return stdout.decode("utf-8", "replace").strip()

    async def _ask_serve(self, url: str) -> str:
        """The freshest token the serve process holds for the source's installation; "" when
        it holds none yet (the provider then waits, as for an empty file)."""
        s = self._source
        secret = s.serve_secret_value or (s.serve_secret.read() if s.serve_secret else "")
        if not secret:
            where = s.serve_secret.describe() if s.serve_secret else "nothing"
            raise SystemTokenError(
                self.environment, f"no secret for {self._describe()} (read from {where})"
            )
        try:
            async with asyncio.timeout(self._command_timeout):
                while self._unreported:
                    await report_refused_token(url, s.installation_id or "",
                                               self._unreported[0], secret, self.environment)
                    self._unreported.pop(0)
                return await fetch_system_token(url, s.installation_id or "", secret,
                                                self.environment)
        except TimeoutError as exc:
            raise SystemTokenError(
                self.environment, f"{self._describe()} took over {self._command_timeout:g} s"
            ) from exc

    async def _read_sealed(self) -> str:
        """The installation's freshest sealed token in the database ("" when none yet)."""
        try:
            async with asyncio.timeout(self._command_timeout):
                return await sealed.read_source(self._source, self._unreported)
        except SealKeyError as exc:
            # Another key stays another key, however long one waits.
            raise BrokenSourceError(self.environment, str(exc)) from None
        except (TimeoutError, psycopg.Error) as exc:
            raise SystemTokenError(self.environment, f"{self._describe()} can't be read "
                                   f"({type(exc).__name__})") from None


def describe_source(source: SystemTokenSource) -> str:
    """Where ``source`` reads its token, in words for messages: never the token itself, and of
    a command only its program (its arguments may carry anything)."""
    if source.env:
        return f"environment variable {source.env}"
    if source.file is not None:
        return f"file {_source_path(source, source.file)}"
    if source.command:
        return f"command {source.command[0]}"
    if source.serve:
        return f"the serve process at {source.serve} (installation {source.installation_id})"
    if source.sealed:
        return (f"the sealed tokens in {safe_url(source.sealed)} "
                f"(installation {source.installation_id})")
    return "no source"


def _source_path(source: SystemTokenSource, file: Path) -> Path:
    return file if file.is_absolute() else source.cwd / file


async def _run_process(argv: list[str], cwd: Path) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (no shell) to its end: exit code, stdout, stderr. Cancelled (a timeout),
    the process is killed and reaped before the cancel goes on: no command outlives its read."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await to_the_end(process.wait())
        raise
    assert process.returncode is not None
    return process.returncode, stdout, stderr


def _resolve(command: tuple[str, ...]) -> list[str]:
    """The command with its program found on PATH, else beside the running Python.

    ``forge-runner`` installed in a virtual environment that is not on PATH (run as
    ``.venv/bin/forge-runner``) still finds its own ``forge-runner`` for a token command.
    """
    program, *args = command
    if os.sep not in program and shutil.which(program) is None:
        beside = shutil.which(program, path=str(Path(sys.executable).parent))
        if beside is not None:
            program = beside
    return [program, *args]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def jwt_exp(token: str) -> float | None:
    """The JWT's ``exp``, unverified; None for an opaque token or one without ``exp``."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _later(a: _Held, b: _Held) -> bool:
    if a.expires_at is None:
        return True
    return b.expires_at is not None and a.expires_at > b.expires_at


def _safe_stderr(raw: bytes) -> str:
    """The last line of a command's stderr with anything token-like cut out: a failing token
    command may well print the token it could not deliver."""
    lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return "no message"
    line = _SECRETISH.sub("[redacted]", lines[-1].strip())
    return line[:200]
