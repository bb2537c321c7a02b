"""Checks of the pte-mapped cache on a booted guest, shared by the tests and the negative
checks (which run them where the behaviour is broken and expect an AssertionError).

Every check records what it measured in ``figures`` before asserting, so a failure (and
the JSON summary) carries the numbers.
"""

from __future__ import annotations

from tests.kernel.ptecache import CACHED, SPLITS, Trace, grouping_bound, ptm

N = 2048
# Unmovable free memory scattered over many 2M regions: what a long-running system has.
FRAGMENT = "bg-start frag pipes 32768 16"


def fragment(session) -> None:
    result = session.run(FRAGMENT, timeout=300)
    assert result.status == 0, f"{FRAGMENT} failed:\n{result.output}"


def all_succeeded(trace: Trace) -> None:
    for r in trace.results:
        assert r.failed == 0 and r.succeeded == r.requested, f"{r.op} {r.arg} failed:\n{trace}"


def grouping_trace(session) -> Trace:
    """N flagged allocations from an empty cache, on fragmented memory; addrs kept."""
    fragment(session)
    trace = ptm(session, f"drop map before state alloc {N} state addrs map after")
    all_succeeded(trace)
    return trace


def splits_of(trace: Trace) -> int:
    return (trace.states[1] - trace.states[0])[SPLITS]


def check_grouping(session, figures: dict) -> Trace:
    trace = grouping_trace(session)
    delta = trace.states[1] - trace.states[0]
    figures.update(splits=delta[SPLITS], refills=delta["pte_mapped_refill"],
                   bound=grouping_bound(N))
    assert delta[SPLITS] <= grouping_bound(N), (
        f"{N} flagged allocations caused {delta[SPLITS]} level-2 splits, more than "
        f"ceil({N}/512)+1 = {grouping_bound(N)}\n{trace}")
    assert len(trace.addrs) == N, f"driver holds {len(trace.addrs)} pages, expected {N}"
    wrong = [hex(a) for a in trace.addrs if trace.maps["after"].level_of(a) != "pte"]
    figures["pages_not_pte_mapped"] = len(wrong)
    assert not wrong, f"{len(wrong)} of {N} pages are not in a 4K pte run: {wrong[:5]}"
    return trace


# The cache refills a reserve of 64 pages from a workqueue whenever it falls below that
# (PTE_MAPPED_RESERVE, patch 4). N is a whole number of 2M blocks, so N allocations from an
# empty cache leave it at exactly 0 and the reserve refill runs whenever the workqueue gets
# to it: before the next step, or during it (one split, seen once in a whole-suite run).
RESERVE = 64


def check_reuse(session, figures: dict) -> None:
    """Pages freed to the cache serve the next allocations without a split. The first
    allocation takes 4 * RESERVE more than the second: it ends with 256 pages cached, so
    a reserve refill still queued from its way down finds the cache full enough, and the
    second ends with 512."""
    first = N + 4 * RESERVE
    trace = ptm(session, f"drop alloc {first} free all state alloc {N} state")
    all_succeeded(trace)
    delta = trace.states[1] - trace.states[0]
    figures.update(reuse_splits=delta[SPLITS], reuse_refills=delta["pte_mapped_refill"],
                   reuse_served=delta["pte_mapped_alloc"])
    assert delta[SPLITS] == 0, f"re-allocating {N} freed pages split the direct map:\n{trace}"
    assert delta["pte_mapped_alloc"] >= N, f"re-allocation not served by the cache:\n{trace}"


def check_shrinker_count(session, figures: dict) -> None:
    trace = ptm(session, f"alloc {N * 2} free all state")
    state = trace.states[0]
    counts = state["shrinker_count"], state["shrinker_count_after"]
    figures.update(shrinker_count=counts[0], shrinker_count_after=counts[1], cached=state[CACHED],
                   shrinkers=state["shrinkers"])
    assert state["shrinkers"] == 1, f"expected one pte_mapped_cache shrinker in debugfs:\n{trace}"
    assert state[CACHED] >= N * 2, f"freed pages did not go to the cache:\n{trace}"
    # Read just before and just after the counter: equal to it unless a page came or went.
    assert min(counts) <= state[CACHED] <= max(counts), (
        f"shrinker count {counts[0]} (before) / {counts[1]} (after) does not match "
        f"{CACHED} {state[CACHED]}\n{trace}")


def check_page_tables(session, figures: dict, nproc: int = 8, mb: int = 1024) -> None:
    """Sparse mappings in many processes take page tables from the cache and give them back."""
    before = ptm(session, "drop map before state").states[0]
    result = session.run(f"bg-start pgt pgtables {nproc} {mb}", timeout=300)
    assert result.status == 0, result.output
    during = ptm(session, "state map during").states[0]
    result = session.run("bg-stop pgt", timeout=120)
    assert result.status == 0, result.output
    after = ptm(session, "state").states[0]
    tables = nproc * (mb // 2)  # one PTE page per touched 2M
    served = (during - before)["pte_mapped_alloc"]
    splits = (during - before)[SPLITS]
    returned = (after - during)[CACHED]
    figures.update(page_table_pages_expected=tables, served_from_cache=served,
                   splits=splits, pages_returned_on_exit=returned)
    table = Trace("page tables", [before, during, after])
    assert served >= tables, f"only {served} of >= {tables} page tables came from the cache\n{table}"
    assert splits <= grouping_bound(served), (
        f"{served} page-table pages caused {splits} splits (bound {grouping_bound(served)})\n{table}")
    assert returned >= tables, f"only {returned} of >= {tables} pages returned on exit\n{table}"


def check_baseline(boot, figures):
    """Splits of the same fragmented-memory workload with the cache and without."""
    with_cache = splits_of(grouping_trace(boot()))
    without = splits_of(grouping_trace(boot("pte_mapped_cache=off")))
    figures.update(splits_with_cache=with_cache, splits_without_cache=without)
    assert with_cache * 8 <= without, (
        f"{N} allocations: {with_cache} splits with the cache, {without} without; "
        f"expected at most 1/8")


def check_fallback(session, figures):
    """With order-9 allocations failing, flagged ones still succeed through order-0
    fallbacks, and the fallback regions' free neighbours serve the rest without splits."""
    trace = ptm(session, f"drop map before fail9 on state alloc {N} state fail9 off map after")
    all_succeeded(trace)
    before, after = trace.states
    delta = after - before
    figures.update(fallbacks=delta["pte_mapped_fallback"], neighbours=delta["pte_mapped_neighbour"],
                   refills=delta["pte_mapped_refill"], splits=delta[SPLITS])
    assert delta["pte_mapped_fallback"] >= 1, f"no order-0 fallback\n{trace}"
    assert delta["pte_mapped_refill"] == 0, f"a 2M refill despite fail_page_alloc\n{trace}"
    from_neighbours = N - before[CACHED] - delta["pte_mapped_fallback"]
    assert delta["pte_mapped_neighbour"] >= from_neighbours, (
        f"{N} requests, {before[CACHED]} cached pages and {delta['pte_mapped_fallback']} "
        f"fallbacks need >= {from_neighbours} neighbours, got {delta['pte_mapped_neighbour']}\n{trace}")
    assert delta[SPLITS] <= delta["pte_mapped_fallback"], (
        f"pages served from neighbours split the direct map\n{trace}")


def check_atomic_served(session, figures):
    """A burst of atomic requests on a filled cache: served from it, no refill, no split."""
    burst = 1000
    trace = ptm(session, f"alloc {N} free all state alloc_atomic {burst} state")
    all_succeeded(trace)
    delta = trace.states[1] - trace.states[0]
    figures.update(atomic_served=delta["pte_mapped_atomic_alloc"], refills=delta["pte_mapped_refill"],
                   splits=delta[SPLITS])
    assert delta["pte_mapped_atomic_alloc"] == burst, str(trace)
    assert delta["pte_mapped_refill"] == 0 and delta["pte_mapped_fallback"] == 0, str(trace)
    assert delta[SPLITS] == 0, str(trace)
