"""What the runner's parts tell the outside world while they work: one typed event per fact.

Minting, Jira calls, the budgets, the engine and the Forge Remote backend report what happens
(a mint, a 429, a pause, an item's end) as an ``Event``: a frozen dataclass defined in this
package and nowhere else. A part emits each fact once, through an ``Emitter``: the observers
(progress display, run statistics, the report, a doctor) get the object, and the log gets the
same object rendered as one line, ``runner.<name>`` with the dataclass's fields, at the level
its class chooses. Parts never import the display, and the display never reaches into the
parts; consumers match on the class.

The Emitter renders the line itself rather than handing the object to a structlog processor:
``structlog.testing.capture_logs`` replaces the configured processors, so under it a processor
would never run and tests would capture the bare object instead of the line users read.

Fields are plain values and never hold a token (design principle 6); the log still redacts.
Fields after the first few exist for the log line (request ids, waits) and may be None.

The catalogue, by name (class), in modules by stage:
  minting (runner.minting)
    mint.ok              MintOk              environment, site, account
    mint.rate_limited    MintRateLimited     bucket, until (POSIX), shape (retry_after|reset|
                                             graphql|backoff)
    mint.user_refused    MintUserRefused     environment, site, account, reason
    mint.context_refused MintContextRefused  environment, aris (tuple), message
    mint.retry           MintRetry           environment, reason, attempt
    mint.system_token_rejected
                         MintSystemTokenRejected (a MintRetry)  environment, attempt, ids
    mint.failed          MintFailed          environment, site, account, reason, attempts
    system_token.waiting SystemTokenWaiting  environment, reason
    system_token.ok      SystemTokenOk       environment, expires_at
    gateway.call         GatewayCall         environment, outcome, duration_s (every mint sent)
  jira (runner.jira.executor, runner.budgets)
    jira.call            JiraCall            site, method, template, status, duration_s
    jira.rate_limited    JiraRateLimited     site, scope (str), reason, until
    jira.retry           JiraRetry           site, template, reason, attempt
    jira.failed          JiraFailed          site, method, template, reason, status
    jira.uncertain       JiraUncertain       site, method, template, reason
    pause                Pause               scope (str), reason, until (any budget holding back)
    resume               Resume              scope (str)
    budgets.near_limit   QuotaNearLimit      scope, remaining
    budgets.burst_cut    BurstCut            scope, rate (per s)
    budgets.quota_exhausted
                         QuotaExhausted      scope, reset_at
  items (runner.engine)
    item.done / .failed / .skipped / .blocked / .uncertain
                         ItemDone, ItemFailed, ItemSkipped, ItemBlocked, ItemUncertain
                                             site, account, row, action (+ reason: a code,
                                             detail, target, unless done)
    item.recovered       ItemRecovered       row, action, found (a create looked up at a resume)
    journal.failed       JournalFailed       row, action, error
    run.finished         RunFinished         run, state
  cluster (runner.cluster.worker)
    lane.taken_over      LaneTakenOver       run, site, account, fence (a lane held before)
    lane.lost            LaneLeaseLost       run, site, account, fence, why
  journal (runner.journal.postgres)
    journal.waiting      JournalWaiting      journal (URL, no password), reason, wait_s
    journal.reconnected  JournalReconnected  journal, waited_s
  remote (runner.remote)
    remote.trigger.duplicate / .overlap / .accepted
                         TriggerDuplicate, TriggerOverlap, TriggerAccepted    route, site
    remote.run.crashed / .already_done / .locked / .started / .resumed / .finished /
    .template_changed    RemoteRunCrashed, RemoteRunAlreadyDone, RemoteRunLocked,
                         RemoteRunStarted, RemoteRunResumed, RemoteRunFinished,
                         RemoteRunTemplateChanged                             job, run, site...
"""

from __future__ import annotations

from runner.events.base import (
    DEBUG,
    ERROR,
    INFO,
    WARNING,
    Emitter,
    Event,
    FanOut,
    NullObserver,
    Observer,
    log_event,
)
from runner.events.cluster import LaneLeaseLost, LaneTakenOver
from runner.events.items import (
    ItemBlocked,
    ItemDone,
    ItemEvent,
    ItemFailed,
    ItemRecovered,
    ItemSkipped,
    ItemUncertain,
    JournalFailed,
    RunFinished,
)
from runner.events.jira import (
    BurstCut,
    JiraCall,
    JiraFailed,
    JiraRateLimited,
    JiraRetry,
    JiraUncertain,
    Pause,
    QuotaExhausted,
    QuotaNearLimit,
    Resume,
)
from runner.events.journal import JournalReconnected, JournalWaiting
from runner.events.minting import (
    GatewayCall,
    MintContextRefused,
    MintFailed,
    MintOk,
    MintRateLimited,
    MintRetry,
    MintSystemTokenRejected,
    MintUserRefused,
    SystemTokenOk,
    SystemTokenWaiting,
)
from runner.events.remote import (
    RemoteRunAlreadyDone,
    RemoteRunCrashed,
    RemoteRunFinished,
    RemoteRunLocked,
    RemoteRunResumed,
    RemoteRunStarted,
    RemoteRunTemplateChanged,
    TriggerAccepted,
    TriggerDuplicate,
    TriggerOverlap,
)

__all__ = [
    "DEBUG",
    "ERROR",
    "INFO",
    "WARNING",
    "BurstCut",
    "Emitter",
    "Event",
    "FanOut",
    "GatewayCall",
    "ItemBlocked",
    "ItemDone",
    "ItemEvent",
    "ItemFailed",
    "ItemRecovered",
    "ItemSkipped",
    "ItemUncertain",
    "JiraCall",
    "JiraFailed",
    "JiraRateLimited",
    "JiraRetry",
    "JiraUncertain",
    "JournalFailed",
    "JournalReconnected",
    "JournalWaiting",
    "LaneLeaseLost",
    "LaneTakenOver",
    "MintContextRefused",
    "MintFailed",
    "MintOk",
    "MintRateLimited",
    "MintRetry",
    "MintSystemTokenRejected",
    "MintUserRefused",
    "NullObserver",
    "Observer",
    "Pause",
    "QuotaExhausted",
    "QuotaNearLimit",
    "RemoteRunAlreadyDone",
    "RemoteRunCrashed",
    "RemoteRunFinished",
    "RemoteRunLocked",
    "RemoteRunResumed",
    "RemoteRunStarted",
    "RemoteRunTemplateChanged",
    "Resume",
    "RunFinished",
    "SystemTokenOk",
    "SystemTokenWaiting",
    "TriggerAccepted",
    "TriggerDuplicate",
    "TriggerOverlap",
    "log_event",
]
