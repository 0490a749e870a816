"""The checker on hand-made logs: each count is zero for a clean log and catches its anomaly."""

from __future__ import annotations

from runner.sandbox.arrivals import JiraArrival, MintArrival
from tests.cluster.checker import (
    Claim,
    Expected,
    JournalItem,
    Limit,
    Limits,
    check,
    late_writes,
    most_in_window,
    requests_after,
    worker_of,
)

CLOUD = "c1"
COMMENT = "POST /rest/api/3/issue/{issueIdOrKey}/comment"
PROPERTY = "PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"
ANN, BEN = "acc-ann", "acc-ben"
W1, W2 = "forge-runner/0.1.0 (worker w1)", "forge-runner/0.1.0 (worker w2)"
# Ann's rows r1 and r3, Ben's r2; two creates per row.
EXPECTED = [Expected(f"{row}#{i}", user) for row, user in (("r1", ANN), ("r2", BEN), ("r3", ANN))
            for i in (0, 1)]


def made(at: float, item: str | None, account: str, *, applied: bool = True,
         sender: str = W1, issue: str = "MIG-1", route: str = COMMENT,
         points: int = 1) -> JiraArrival:
    return JiraArrival(at, CLOUD, route, issue, sender=sender, account=account, marker=item,
                       status=201 if applied else 429, applied=applied,
                       created="1" if applied else None, points=points if applied else 0)


def clean() -> list[JiraArrival]:
    return [made(float(n), e.item, e.account) for n, e in enumerate(EXPECTED)]


def test_a_clean_log_counts_nothing() -> None:
    """Every item made once, in order, with its user's token: every count is 0."""
    assert check(clean(), [], EXPECTED).counts() == {
        "lost": 0, "duplicated": 0, "inversions": 0, "wrong_account": 0, "stale_writes": 0,
        "over_budget": 0}


def test_lost_counts_expected_and_journaled_done_items_without_an_effect() -> None:
    """An item whose only arrival was refused is lost; so is a journaled done create with no
    effect; a done idempotent write without a marker is not expected to show one."""
    log = clean()
    log[3] = made(3.0, "r2#1", BEN, applied=False)
    journal = [JournalItem("run", "r9", 0, "comment.add", "done", ANN, 1.0),
               JournalItem("run", "r9", 1, "issue.property.set", "done", ANN, 1.0)]
    verdict = check(log, [], EXPECTED, journal=journal)
    assert verdict.lost == ["r2#1", "r9#0"]
    assert verdict.counts()["lost"] == 2


def test_duplicated_counts_every_extra_effect_of_an_item() -> None:
    """An item made three times has 2 extra effects; a refused attempt before an applied one is
    not a duplicate; the duplicate arriving late is no inversion."""
    log = [*clean(), made(10.0, "r1#0", ANN), made(11.0, "r1#0", ANN),
           made(12.0, "r2#0", BEN, applied=False)]
    verdict = check(log, [], EXPECTED)
    assert verdict.duplicated == {"r1#0": 2}
    assert verdict.counts()["duplicated"] == 2
    assert verdict.inversions == {}


def test_inversions_count_a_users_items_made_out_of_job_order() -> None:
    """Ann's r3 made before her r1: her r1's two items came late (2); Ben's item arriving
    between Ann's is no inversion."""
    e = {x.item: x for x in EXPECTED}
    order = ["r3#0", "r2#0", "r3#1", "r1#0", "r2#1", "r1#1"]
    log = [made(float(n), item, e[item].account) for n, item in enumerate(order)]
    verdict = check(log, [], EXPECTED)
    assert verdict.inversions == {ANN: 2}
    assert verdict.counts()["inversions"] == 2


def test_wrong_account_counts_an_effect_made_with_another_users_token() -> None:
    """Ben's item created with Ann's token is counted."""
    log = clean()
    log[2] = made(2.0, "r2#0", ANN)
    assert check(log, [], EXPECTED).wrong_account == ["r2#0"]


def test_stale_writes_are_writes_accepted_under_a_fence_after_a_newer_one_was_claimed() -> None:
    """Fence 1's write at t=12, after fence 2 was claimed at t=10, is stale; its write at t=8,
    before that claim, is not; another lane's claim does not matter."""
    journal = [JournalItem("run", "r1", 0, "comment.add", "done", ANN, 12.0, fence=1),
               JournalItem("run", "r1", 1, "comment.add", "done", ANN, 8.0, fence=1),
               JournalItem("run", "r2", 0, "comment.add", "done", BEN, 12.0, fence=1),
               JournalItem("run", "r3", 0, "comment.add", "done", ANN, 13.0, fence=2)]
    claims = [Claim("run", ANN, 2, 10.0), Claim("run", BEN, 1, 0.0)]
    log = [*clean(), made(9.0, "r3#0", ANN)]
    verdict = check(log, [], EXPECTED, journal=journal, claims=claims)
    assert verdict.stale_writes == ["run r1#0"]


def test_windows_sliding_and_aligned() -> None:
    """0.5, 0.9, 1.1, 1.5 s: three in the sliding second (0.5, 1.5], two in an aligned one;
    weights add up."""
    times = [(0.5, 1.0), (0.9, 1.0), (1.1, 1.0), (1.5, 1.0)]
    assert most_in_window(times, Limit(10, 1.0)) == 3
    assert most_in_window(times, Limit(10, 1.0, aligned=True)) == 2
    assert most_in_window([(0.0, 5.0), (0.5, 4.0), (1.0, 1.0)], Limit(10, 1.0)) == 9
    assert most_in_window([], Limit(10, 1.0)) == 0


def test_budgets_find_each_peak_and_flag_only_those_over_their_limit() -> None:
    """Mints count refused attempts too, per client; the quota sums charged points; bursts are
    per route; per-issue writes are per issue and leave reads out."""
    mints = [MintArrival(t, "dev", t < 0.3) for t in (0.0, 0.1, 0.2, 0.3)]
    mints.append(MintArrival(0.05, "other", True))
    log = [
        made(0.0, "r1#0", ANN, points=5), made(0.1, "r1#1", ANN, points=5),
        made(0.2, None, ANN, route="GET /rest/api/3/issue/{issueIdOrKey}"),
        made(0.3, None, ANN, route=PROPERTY, issue="MIG-2"),
    ]
    limits = Limits(mints=Limit(3, 1.0), quota=Limit(10, 60.0, aligned=True),
                    burst=Limit(1, 1.0), per_issue=(Limit(2, 2.0),))
    verdict = check(log, mints, [], limits=limits)
    peaks = {(p.budget, p.key): p.peak for p in verdict.peaks}
    assert peaks[("mints", "dev")] == 4 and peaks[("mints", "other")] == 1
    assert peaks[("quota", "all")] == 12
    assert peaks[("burst", f"{CLOUD} {COMMENT}")] == 2
    assert peaks[("per_issue", f"{CLOUD} MIG-1")] == 2
    assert peaks[("per_issue", f"{CLOUD} MIG-2")] == 1
    over = {(p.budget, p.key) for p in verdict.over_budget}
    assert over == {("mints", "dev"), ("quota", "all"), ("burst", f"{CLOUD} {COMMENT}")}
    assert verdict.counts()["over_budget"] == 3


def test_requests_after_a_moment_are_found_by_worker() -> None:
    """Worker w1's Jira calls and mints after t=5 are found, w2's and earlier ones are not; the
    worker ID is read from forge-runner's User-Agent and nothing else."""
    log = [made(4.0, "a#0", ANN), made(6.0, "b#0", ANN), made(7.0, "c#0", ANN, sender=W2)]
    mints = [MintArrival(5.5, "dev", True, sender=W1), MintArrival(8.0, "dev", True, sender=W2)]
    found = requests_after(log, mints, "w1", 5.0)
    assert [a.at for a in found] == [5.5, 6.0]
    mints.append(MintArrival(9.0, "dev", True, sender=W1, account=BEN))
    assert [a.at for a in requests_after(log, mints, "w1", 5.0, accounts={BEN})] == [9.0]
    assert worker_of(W2) == "w2"
    assert worker_of("Python/3.11 aiohttp/3.9") is None and worker_of(None) is None


def test_an_identify_of_the_tests_own_counts_idempotent_writes() -> None:
    """Property writes carry no marker; an identify reading the row from the path counts them:
    one missing is lost, one written twice is duplicated."""
    expected = [Expected("r1#0", ANN), Expected("r2#0", BEN), Expected("r3#0", ANN)]

    def by_path(a: JiraArrival) -> str | None:
        return a.path.rsplit("/", 1)[-1] + "#0" if a.route == PROPERTY else None

    log = [JiraArrival(float(n), CLOUD, PROPERTY, "MIG-1", path=f"/x/properties/{row}",
                       account=acc, applied=True)
           for n, (row, acc) in enumerate([("r1", ANN), ("r1", ANN), ("r3", ANN)])]
    verdict = check(log, [], expected, identify=by_path)
    assert verdict.lost == ["r2#0"]
    assert verdict.duplicated == {"r1#0": 1}


def test_late_writes_are_those_under_a_lost_fence_after_the_lease_ended() -> None:
    """Ann's lane was lost under fence 2, its lease ending at t=10: her item written at t=11
    under fence 2 is late; one under fence 3 (the new owner's) and one before t=10 are not;
    Ben's lane was not lost."""
    journal = [JournalItem("run", "r1", 0, "comment.add", "done", ANN, 11.0, fence=2),
               JournalItem("run", "r3", 0, "comment.add", "done", ANN, 12.0, fence=3),
               JournalItem("run", "r1", 1, "comment.add", "done", ANN, 9.0, fence=2),
               JournalItem("run", "r2", 0, "comment.add", "done", BEN, 12.0, fence=1)]
    assert late_writes(journal, [("run", ANN, 2)], after=10.0) == ["run r1#0"]
