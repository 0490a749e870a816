"""One row's actions, in order, as its user: journal, mint, call, classify, journal.

For each action still to do:
- the environment is blocked, or the user can't be impersonated: the item is ``blocked`` or
  ``skipped`` with the reason, and so is the rest of the row;
- the user's mint failed for good (``GatewayError``, or ``TransportError`` once the mint policy
  is spent): the rest of the row is ``failed`` with the reason, or ``blocked`` when the gateway
  refused in words the config can't classify or the failure blocked the environment;
- a create that was ``started`` or ``uncertain`` before (a crash, an unanswered create) is
  looked for first (``runner.recovery``): found -> ``done``; surely missing -> sent; unknown ->
  stays ``uncertain``; not found by search too soon after the item's start (search lags
  behind writes) -> the item waits out ``[runner] search_settle_s`` and is looked for again;
- otherwise: journaled ``started`` (durable) before the request leaves, then ``done`` (with the
  IDs created), ``failed`` (Jira's reason) or ``uncertain`` before the next action starts;
  after a ``failed`` or ``uncertain`` one, the job's ``on_failure = "stop-row"`` (the default)
  journals the row's later actions ``skipped`` (``row-stopped``), ``"continue"`` sends them.
While the run drains, no next action is started, and an item that is only waiting (for a token,
a permit, a 429's pause, a backoff before trying again) is cancelled: nothing of it is on the
wire. It stays as journaled (``started`` once a request of it left), and a resume judges it as
after a crash: an idempotent item is sent again, a create is looked up first.

``done`` is queued without waiting for its commit: the journal makes writes durable in the
order they were made, and the user's next ``started`` is queued after it and awaited before
that request leaves, so the ``done`` is durable by then. The two share one commit, where
waiting for each would cost a commit apiece on every item (see ``bench/throughput.py``). The
journal's future for that ``done`` is kept: the row's next send checks it (already settled,
so it costs no wait), and ``settle`` awaits whatever is still open at the end of the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import structlog

from runner.actions import PythonAction
from runner.config.configfile import Config, SiteConfig
from runner.engine import why
from runner.engine.flight import Dropped, Flight
from runner.engine.shutdown import Shutdown
from runner.engine.todo import Todo, result_of
from runner.errors import (
    ActionError,
    BlockedEnvironmentError,
    GatewayError,
    JiraCallError,
    JournalError,
    LaneLostError,
    SystemTokenError,
    TransportError,
    UserRefusedError,
)
from runner.events import (
    Emitter,
    ItemBlocked,
    ItemDone,
    ItemFailed,
    ItemRecovered,
    ItemSkipped,
    ItemUncertain,
    JournalFailed,
    Observer,
)
from runner.jira.client import LAST_CHECK, JiraRequest
from runner.jira.executor import (
    CallExecutor,
    CallResult,
    Done,
    Failed,
    OnSend,
    OnWait,
    Uncertain,
)
from runner.jira.recovery import Found, Missing, Verdict, find_created, too_early
from runner.jira.userclient import UserJira
from runner.job.jobfile import Job, Row
from runner.journal import Journal
from runner.journal.base import ItemRef, ItemState, as_future, item_key
from runner.journal.reasons import Reason, http, user_refused
from runner.minting.minter import Minter

log = structlog.get_logger("runner.engine")

Gate = Callable[[str, ItemRef], Awaitable[None]]
class RowWorker:
    def __init__(
        self,
        config: Config,
        job: Job,
        journal: Journal,
        run_id: str,
        executor: CallExecutor,
        minters: Mapping[str, Minter],
        *,
        observer: Observer,
        shutdown: Shutdown,
        deadline: float,
        wall: Callable[[], float] = time.time,
        gate: Gate | None = None,
        last_check: Callable[[str, ItemRef], None] | None = None,
    ) -> None:
        """A worker's lanes (``runner.cluster``): ``gate(run_id, item)`` is awaited before an
        item's token and requests, and once its ``started`` is durable; ``last_check`` as each
        request's connection is ready. A lane whose lease is ending raises ``LaneLostError``."""
        self.config = config
        self.job = job
        self.journal = journal
        self.run_id = run_id
        self.executor = executor
        self.minters = minters
        self.observer = observer
        self._emit = Emitter(observer)
        self.shutdown = shutdown
        self.deadline = deadline
        self.wall = wall  # the journal's clock: what ``Todo.since`` is measured on
        self.gate = gate
        self.last_check = last_check
        self._flights: set[Flight] = set()
        # ``done`` writes queued and not yet known to be durable, and the first that failed.
        self._unsettled: set[asyncio.Future[object]] = set()
        self._last_done: dict[str, asyncio.Future[object]] = {}  # by row key
        self._journal_failure: BaseException | None = None
        # By row key: the action of the row's item just journaled failed or uncertain, as
        # "actions[0] comment.add failed" (the job's on_failure says what the row does next).
        self._broken: dict[str, str] = {}
        shutdown.on_drain(self.drop_waiting)

    def check_journal(self) -> None:
        """Raise ``JournalError`` if a ``done`` could not be journaled: nothing more is sent."""
        if self._journal_failure is not None:
            raise JournalError(f"an item's done could not be journaled: {self._journal_failure}")

    async def settle(self) -> None:
        """Return once every ``done`` queued so far is durable; raise if one failed."""
        if self._unsettled:
            await asyncio.wait(set(self._unsettled))
        self.check_journal()

    def drop_waiting(self, lane: tuple[str, str] | None = None) -> None:
        """Drop what only waits: of every row (a drain), or of a (site, account) lane lost."""
        for flight in list(self._flights):
            if not flight.sending and lane in (None, (flight.ref.site, flight.ref.account_id)):
                flight.drop()

    async def _on_send(self, flight: Flight) -> None:
        """Right before a request of ``flight`` leaves: journal ``started`` (durable before
        effect), unless a drain dropped it or a ``done`` failed to be journaled."""
        self.check_journal()
        if flight.dropped:
            raise Dropped  # dropped as it woke: stop before anything more is journaled or sent
        if self.gate is not None:
            await self.gate(self.run_id, flight.ref)
        # On the wire from here: a drain arriving while ``started`` is being journaled must not
        # cancel it, or the item would stay ``started`` with nothing sent (and a create that
        # can't be looked up would become ``uncertain`` on resume).
        flight.sending = True
        if not flight.started:
            await self.journal.mark_started(self.run_id, flight.ref)
            flight.started = True
            if self.gate is not None:  # the write may have waited out a database outage
                await self.gate(self.run_id, flight.ref)
        if self.last_check is not None:
            LAST_CHECK.set(partial(self.last_check, self.run_id, flight.ref))
        previous, flight.previous_done = flight.previous_done, None
        if previous is not None:
            await previous  # durable already: queued before the ``started`` just awaited

    def _on_wait(self, flight: Flight) -> None:
        """A request of ``flight`` is back from the wire and must wait before it is tried
        again: a drain may drop it now, and one that came while it was sending does."""
        flight.sending = False
        if self.shutdown.draining:
            flight.drop()

    async def process(self, row: Row, todo: list[Todo]) -> None:
        site = self.config.sites[row.site]
        minter = self.minters[site.environment]
        self._broken.pop(row.key, None)
        with structlog.contextvars.bound_contextvars(site=site.name, account=row.account_id,
                                                     row=row.key):
            for index, step in enumerate(todo):
                if self.shutdown.draining:
                    return
                ref = ItemRef(row.key, step.action.index, row.site, row.account_id,
                              step.action.name)
                if minter.blocked is not None:
                    # Blocked at its first refusal: the rest is blocked without a mint.
                    await self._close_rest(("blocked", why.BLOCKED), row, todo[index:])
                    return
                try:
                    async with asyncio.timeout(None) as window:
                        flight = Flight(ref, window, self._last_done.pop(row.key, None))
                        self._flights.add(flight)
                        try:
                            if self.gate is not None:  # before its token too: no mint
                                await self.gate(self.run_id, ref)
                            await self._one(site, row, step, ref, flight)
                        finally:
                            self._flights.discard(flight)
                except (Dropped, LaneLostError):
                    return
                except TimeoutError:
                    if window.expired():
                        return  # dropped by a drain while it waited
                    raise
                except UserRefusedError as exc:
                    await self._close_rest(("skipped", user_refused(exc.reason)), row,
                                           todo[index:])
                    return
                except BlockedEnvironmentError:
                    await self._close_rest(("blocked", why.BLOCKED), row, todo[index:])
                    return
                except SystemTokenError as exc:
                    await self._close_rest(("blocked", why.system_token(exc)), row,
                                           todo[index:])
                    return
                except (GatewayError, TransportError) as exc:
                    # Only a mint raises these out of ``_one`` (Jira's own transport failures
                    # are outcomes): this user's work ends here, not the run.
                    await self._close_rest(why.mint_failed(exc, minter.blocked is not None), row,
                                           todo[index:])
                    return
                stopped = self._broken.pop(row.key, None)
                if stopped is not None and self.job.on_failure == "stop-row":
                    await self._close_rest(("skipped", why.row_stopped(stopped)), row,
                                           todo[index + 1:])
                    return

    async def _close_rest(self, ending: tuple[str, Reason], row: Row, rest: list[Todo]) -> None:
        state, reason = ending
        for step in rest:
            ref = ItemRef(row.key, step.action.index, row.site, row.account_id, step.action.name)
            target = why.target_of(step.action, row)
            detail = reason.detail(target)
            if state == "skipped":
                await self.journal.mark_skipped(self.run_id, ref, reason.code, detail=detail)
            elif state == "failed":
                await self.journal.mark_failed(self.run_id, ref, reason.code, detail=detail)
            else:
                await self.journal.mark_blocked(self.run_id, ref, reason.code, detail=detail)
            # The event says what the journal holds: the summary counts these.
            cls = {"skipped": ItemSkipped, "failed": ItemFailed}.get(state, ItemBlocked)
            self._emit(cls(site=row.site, account=row.account_id, row=row.key,
                           action=step.action.name, reason=reason.code,
                           detail=reason.message or None, target=target))

    async def _one(
        self, site: SiteConfig, row: Row, step: Todo, ref: ItemRef, flight: Flight
    ) -> None:
        action = step.action
        key = item_key(row.key, action.index)
        if isinstance(action, PythonAction):  # its calls are the job's: no wait is dropped
            if step.prior in (ItemState.STARTED, ItemState.UNCERTAIN) and not action.idempotent:
                await self._uncertain(ref, Reason("python-may-have-run"))
                return
            await self._on_send(flight)  # the job's own code: let it finish on a drain
            await self._python(site, row, action, ref)
            return
        try:
            request = action.render(row, key)
        except Exception as exc:  # rows were checked before the run; a failure here is data
            await self._failed(ref, Reason("render", str(exc)))
            return
        target = why.target(request)
        if step.prior in (ItemState.STARTED, ItemState.UNCERTAIN) and action.creates is not None:
            verdict = await self._look_up(site, row, step, request, key)
            if isinstance(verdict, Found):
                self._emit(ItemRecovered(row=row.key, action=action.name, found=True))
                self._done(ref, dict(verdict.result))
                return
            if not isinstance(verdict, Missing):
                await self._uncertain(ref, Reason("lookup-failed", verdict.reason), target)
                return
            self._emit(ItemRecovered(row=row.key, action=action.name, found=False))
        elif step.prior is ItemState.UNCERTAIN:
            await self._uncertain(ref, Reason("outcome-unknown", "still unknown at the resume"),
                                  target)
            return
        elif step.prior is ItemState.STARTED:  # idempotent: sending it again is safe
            self._emit(ItemRecovered(row=row.key, action=action.name, found=False))
        outcome = await self._send(site, row, request, partial(self._on_send, flight),
                                   partial(self._on_wait, flight))
        # Its outcome is journaled whatever a drain says now (``process`` starts no next item):
        # a ``deadline`` can end a call while it waits, not sending.
        flight.sending = True
        await self._record(ref, outcome, target)

    async def _look_up(
        self, site: SiteConfig, row: Row, step: Todo, request: JiraRequest, key: str
    ) -> Verdict:
        """Look for the create; a "missing" from search too soon after the item's start is
        looked for again once search has had time to index it. The wait is the item's alone
        (other users' rows go on), and a drain ends it with nothing sent."""
        settle_s = self.config.runner.search_settle_s
        while True:
            verdict = await find_created(self._sender(site, row), site, step.action.creates,
                                         request, key)
            wait = too_early(verdict, step.since, self.wall(), settle_s)
            if wait <= 0:
                return verdict
            log.info("runner.item.recheck_later", action=step.action.name, wait_s=round(wait, 1),
                     reason="not found by search yet; search lags behind writes")
            await asyncio.sleep(wait)

    def _sender(self, site: SiteConfig, row: Row) -> Any:
        async def send(request: JiraRequest) -> CallResult:
            return await self._send(site, row, request)

        return send

    async def _send(
        self, site: SiteConfig, row: Row, request: JiraRequest, on_send: OnSend | None = None,
        on_wait: OnWait | None = None,
    ) -> CallResult:
        """Send ``request``, first its resolving read when it has one (a transition by name)."""
        if request.resolve is not None:
            first = await self.executor.execute(site, row.account_id, request.resolve.request,
                                                deadline=self.deadline, on_send=on_send,
                                                on_wait=on_wait)
            if not isinstance(first, Done):
                return first
            if on_wait is not None:
                on_wait()  # the write waits for its own permit: nothing is on the wire
            try:
                request = request.resolve.complete(first.response.body)
            except ActionError as exc:
                return Failed(exc.reason)
        return await self.executor.execute(site, row.account_id, request, deadline=self.deadline,
                                           on_send=on_send, on_wait=on_wait)

    async def _python(self, site: SiteConfig, row: Row, action: PythonAction, ref: ItemRef) -> None:
        jira = UserJira(self.executor, site, row.account_id, deadline=self.deadline)
        try:
            value = await action.func(jira, row)
        except (UserRefusedError, BlockedEnvironmentError, SystemTokenError, GatewayError):
            raise
        except JiraCallError as exc:
            await self._failed(ref, http(exc.status, exc.messages) if exc.status is not None
                               else Reason("action", str(exc)))
            return
        except TransportError as exc:
            await self._uncertain(ref, Reason("outcome-unknown", exc.reason))
            return
        except Exception as exc:  # the job's own code: its failure is the item's, not the run's
            await self._failed(ref, Reason("python", f"{type(exc).__name__}: {exc}"))
            return
        self._done(ref, value if isinstance(value, dict) else None)

    async def _record(self, ref: ItemRef, outcome: CallResult, target: str) -> None:
        if isinstance(outcome, Done):
            self._done(ref, result_of(outcome.response.body))
        elif isinstance(outcome, Uncertain):
            await self._uncertain(ref, why.uncertain(outcome), target)
        else:
            await self._failed(ref, why.failed(outcome), target)

    def _done(self, ref: ItemRef, result: dict[str, Any] | None) -> None:
        """Queue ``done`` (see the module's docstring); the event follows once it is durable."""
        future = as_future(self.journal.submit_done(self.run_id, ref, result))
        self._unsettled.add(future)
        self._last_done[ref.row_key] = future
        future.add_done_callback(partial(self._done_settled, ref))

    def _done_settled(self, ref: ItemRef, future: asyncio.Future[object]) -> None:
        self._unsettled.discard(future)
        if self._last_done.get(ref.row_key) is future:
            del self._last_done[ref.row_key]
        failure = None if future.cancelled() else future.exception()
        if isinstance(failure, LaneLostError):
            return  # the lane's new owner judges the item again, as a resume would
        if failure is not None:
            self._emit(JournalFailed(row=ref.row_key, action=ref.action, error=str(failure)))
            if self._journal_failure is None:
                self._journal_failure = failure
            return
        self._emit(ItemDone(site=ref.site, account=ref.account_id, row=ref.row_key,
                            action=ref.action))

    async def _failed(self, ref: ItemRef, reason: Reason, target: str | None = None) -> None:
        await self.journal.mark_failed(self.run_id, ref, reason.code,
                                       detail=reason.detail(target))
        self._ended(ItemFailed, "failed", ref, reason, target)

    async def _uncertain(self, ref: ItemRef, reason: Reason, target: str | None = None) -> None:
        await self.journal.mark_uncertain(self.run_id, ref, reason.code,
                                          detail=reason.detail(target))
        self._ended(ItemUncertain, "uncertain", ref, reason, target)

    def _ended(self, cls: type[ItemFailed | ItemUncertain], how: str, ref: ItemRef,
               reason: Reason, target: str | None) -> None:
        self._broken[ref.row_key] = f"actions[{ref.action_index}] {ref.action} {how}"
        self._emit(cls(site=ref.site, account=ref.account_id, row=ref.row_key, action=ref.action,
                       reason=reason.code, detail=reason.message or None, target=target))

